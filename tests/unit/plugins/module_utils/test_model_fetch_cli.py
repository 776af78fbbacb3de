"""scripts/model-fetch: progress rendering and argument handling (the engine is covered elsewhere)."""

import importlib.machinery
import importlib.util
import io
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def load_cli():
    path = os.path.join(REPO, "scripts", "model-fetch")
    loader = importlib.machinery.SourceFileLoader("model_fetch_cli", path)
    spec = importlib.util.spec_from_loader("model_fetch_cli", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_file_and_total_bars():
    cli = load_cli()
    out = Tty()
    prog = cli.Progress(out)
    prog.last = -1  # draw on the first update
    prog("model-00001.safetensors", 512 * 1024, 1024 * 1024)
    text = out.getvalue()
    assert "model-00001.safetensors" in text and "TOTAL" in text
    assert "50.0%" in text and "ETA" in text and "/s" in text


def test_progress_plain_lines_when_not_a_terminal():
    cli = load_cli()
    out = io.StringIO()
    prog = cli.Progress(out)
    prog("a.bin", 100, 200)
    assert out.getvalue() == ""
    prog("a.bin", 100, 200)
    assert out.getvalue().startswith("a.bin  200 B  ")


@pytest.mark.parametrize(
    "text, expected",
    [("http://m/x", {"type": "http", "url": "http://m/x"}),
     ("hf=https://hf.example", {"type": "hf", "url": "https://hf.example"}),
     ("file:///mnt/b", {"type": "file", "url": "file:///mnt/b"}),
     ("modelscope=https://ms", {"type": "modelscope", "url": "https://ms"})],
)
def test_parse_source(text, expected):
    assert load_cli().parse_source(text) == expected


def test_unsigned_without_flag_is_an_error(tmp_path, capsys):
    cli = load_cli()
    rc = cli.main(["--dest", str(tmp_path / "d"), "--source", "http://127.0.0.1:9", "--quiet"])
    assert rc == 1
    assert "require_signature" in capsys.readouterr().err


@pytest.mark.parametrize("n, expected", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * 1024 ** 3, "3.0 GiB")])
def test_human(n, expected):
    assert load_cli().human(n) == expected
