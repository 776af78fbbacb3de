"""scripts/model-fetch: progress rendering and argument handling (the engine is covered elsewhere)."""

import io

import pytest


@pytest.fixture(scope="module")
def cli(load_script):
    return load_script("model-fetch")


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_file_and_total_bars(cli):
    out = Tty()
    prog = cli.Progress(out)
    prog.last = -1  # draw on the first update
    prog("model-00001.safetensors", 512 * 1024, 1024 * 1024)
    text = out.getvalue()
    assert "model-00001.safetensors" in text and "TOTAL" in text
    assert "50.0%" in text and "ETA" in text and "/s" in text


def test_progress_plain_lines_when_not_a_terminal(cli):
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
def test_parse_source(cli, text, expected):
    assert cli.parse_source(text) == expected


def test_unsigned_without_flag_is_an_error(cli, tmp_path, capsys):
    rc = cli.main(["--dest", str(tmp_path / "d"), "--source", "http://127.0.0.1:9", "--quiet"])
    assert rc == 1
    assert "require_signature" in capsys.readouterr().err


@pytest.mark.parametrize("n, expected", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * 1024 ** 3, "3.0 GiB")])
def test_human(cli, n, expected):
    assert cli.human(n) == expected
