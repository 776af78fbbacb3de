"""The lab's strategy (lab/plugins/strategy/autoglm_mitogen_linear.py): Mitogen's linear strategy with the collection
directories listed once, in the strategy's process, instead of in every worker that runs a collection's module."""

import importlib.util
import json
import os
import stat
import subprocess
from pathlib import Path

import ansible.collections.list
import ansible_mitogen.planner
import jinja2
import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "lab" / "plugins" / "strategy" / "autoglm_mitogen_linear.py"


LISTED = (
    b"/srv/collections/ansible_collections/community/docker",
    b"/srv/collections/ansible_collections/autoglm/fleet",
)


@pytest.fixture
def strategy(monkeypatch):
    """The plugin module, loaded as Ansible's plugin loader would, over a known list of collection directories (a
    plain Python process has no collection loader for the real list: the integration test below has the real one)."""
    calls = []

    def listed(*_args, **_kwargs):
        calls.append(1)
        return iter(LISTED)

    monkeypatch.setattr(ansible.collections.list, "list_collection_dirs", listed)
    monkeypatch.setattr(ansible_mitogen.planner, "_load_collections", ansible_mitogen.planner._load_collections)
    spec = importlib.util.spec_from_file_location("autoglm_mitogen_linear", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.calls = calls
    return module


class Invocation:
    def __init__(self):
        self._extra_sys_paths = set()


def test_the_directories_are_listed_once_when_the_strategy_loads(strategy):
    assert tuple(p.decode("utf-8") for p in LISTED) == strategy.COLLECTION_DIRS
    assert strategy.calls == [1]
    assert ansible_mitogen.planner._load_collections is strategy._load_collections


def test_every_worker_gets_the_list_without_walking_the_directories_again(strategy):
    for _worker in range(3):
        invocation = Invocation()
        ansible_mitogen.planner._load_collections(invocation)
        assert invocation._extra_sys_paths == {p.decode("utf-8") for p in LISTED}
    assert strategy.calls == [1]


@pytest.mark.integration
def test_a_collection_module_runs_under_the_strategy(tmp_path):
    """A real ansible-playbook with the strategy, as scripts/lib.sh lab_strategy sets it: a collection's module runs."""
    mitogen = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    (tmp_path / "data.csv").write_text("name,port\nblue,8001\ngreen,8002\n")
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - community.general.read_csv: {path: %s/data.csv, key: name}\n      register: r\n"
        '    - ansible.builtin.debug: {msg: "{{ r.dict.green.port }}"}\n' % tmp_path
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_STRATEGY_PLUGINS": "%s:%s" % (PLUGIN.parent, mitogen),
        "ANSIBLE_STRATEGY": "autoglm_mitogen_linear",
    }
    argv = [
        str(ROOT / ".venv/bin/ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        "ansible_python_interpreter=%s" % (ROOT / ".venv/bin/python"),
        str(tmp_path / "play.yml"),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "msg: '8002'" in proc.stdout, proc.stdout[-2000:]

    # With the compiled-template cache (as lab_strategy sets it): the first run fills it, the second loads from it.
    cache = tmp_path / "template-code"
    env["AUTOGLM_TEMPLATE_CODE_CACHE"] = str(cache)
    runs = []
    for _run in range(2):
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "msg: '8002'" in proc.stdout and "not caching" not in proc.stderr, proc.stdout[-2000:]
        runs.append(sorted((p.name, p.stat().st_mtime_ns) for p in cache.iterdir()))
    assert runs[0], "the first run compiled no template through the cache"
    assert runs[1] == runs[0]  # the second run wrote nothing: every template came from the cache
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700


# ------------------------------------------------------------------------------------------- skipped without a worker
SKIP_PLAY = """
- hosts: g
  gather_facts: false
  tasks:
    - {name: plain false, ansible.builtin.debug: {msg: never}, when: false}
    - name: per host
      ansible.builtin.command: "true"
      when: flag | int == 1
      register: per_host
      changed_when: false
    - {name: an undefined variable, ansible.builtin.debug: {msg: no}, when: nothing_here is defined, register: gone}
    - {name: the registered skip, ansible.builtin.debug: {var: gone}}
    - {name: an error in the condition, ansible.builtin.debug: {msg: no}, when: nothing_here == 1, ignore_errors: true}
    - {name: a loop, ansible.builtin.debug: {msg: "{{ item }}"}, loop: [1, 2, 3], when: item != 2}
    - {name: an include, ansible.builtin.include_tasks: inc.yml, when: flag | int == 5}
    - {name: no_log, ansible.builtin.debug: {msg: secret}, no_log: true, when: false, register: secret}
    - {name: the registered no_log skip, ansible.builtin.debug: {var: secret}}
    - {name: a connection variable, ansible.builtin.debug: {msg: "{{ ansible_host }}"}, when: ansible_host is defined}
    - {name: delegated, ansible.builtin.debug: {msg: never}, delegate_to: h1, when: false}
    - {name: a templated condition, ansible.builtin.debug: {msg: never}, when: "{{ flag | int == 9 }}"}
    - {name: run once, ansible.builtin.debug: {msg: never}, run_once: true, when: false}
    - {name: notify, ansible.builtin.command: "true", changed_when: true, notify: maybe}
  handlers:
    - {name: maybe, ansible.builtin.debug: {msg: handled}, when: flag | int == 1}
"""


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in ("start", "end", "duration", "delta", "id")}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _run_both_ways(tmp_path, play, inventory, modes):
    """ansible-playbook -vv on `play` under the strategy once per (AUTOGLM_SKIP_IN_STRATEGY, AUTOGLM_RUN_IN_STRATEGY)
    in `modes`: {mode: (the ansible.posix.json output without times, stderr)}."""
    mitogen = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    (tmp_path / "inv").write_text(inventory)
    (tmp_path / "play.yml").write_text(play)
    (tmp_path / "ansible.cfg").write_text(
        "[defaults]\nstdout_callback = ansible.posix.json\ndeprecation_warnings = false\nverbose_to_stderr = true\n"
    )
    out = {}
    for skip, run in modes:
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"),
            "ANSIBLE_STRATEGY_PLUGINS": "%s:%s" % (PLUGIN.parent, mitogen),
            "ANSIBLE_STRATEGY": "autoglm_mitogen_linear",
            "AUTOGLM_SKIP_IN_STRATEGY": skip,
            "AUTOGLM_RUN_IN_STRATEGY": run,
        }
        python = "ansible_python_interpreter=%s" % (ROOT / ".venv/bin/python")
        argv = [str(ROOT / ".venv/bin/ansible-playbook"), "-vv", "-e", python, "-i", "inv", "play.yml"]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
        assert proc.returncode in (0, 2), proc.stdout[-2000:] + proc.stderr[-2000:]
        out[(skip, run)] = (_without_times(json.loads(proc.stdout)), proc.stderr)
    return out


def _by_task(output):
    tasks = {}
    for play in output["plays"]:
        for task in play["tasks"]:
            tasks.setdefault(task["task"]["name"], {}).update(task["hosts"])
    return tasks


@pytest.mark.integration
def test_a_task_skipped_without_a_worker_reports_what_a_worker_reports(tmp_path):
    """The same play with and without SkipInStrategy (AUTOGLM_SKIP_IN_STRATEGY=0): every task's result for every host,
    the recap, registered skips and no_log censoring are the same, and the strategy did answer skips itself (a clean
    False) while conditions that error, warn, loop or delegate went to workers."""
    (tmp_path / "inc.yml").write_text("- ansible.builtin.debug: {msg: included}\n")
    inventory = "[g]\nh1 ansible_connection=local flag=1\nh2 ansible_connection=local flag=0\n"
    out = _run_both_ways(tmp_path, SKIP_PLAY, inventory, [("0", "0"), ("1", "0")])
    assert out[("1", "0")][0] == out[("0", "0")][0]
    assert "0 host-task(s) skipped and 0 run without a worker, 29 given to workers" in out[("0", "0")][1]
    # 11 clean False answers: plain false x2, h2's per-host, undefined x2, include x2, no_log x2, run once, h2's
    # handler; to workers: the loop, delegated, the templated condition (it warns) and every true or failing one.
    assert (
        "autoglm_mitogen_linear: 11 host-task(s) skipped and 0 run without a worker, 18 given to workers"
        in out[("1", "0")][1]
    )
    tasks = _by_task(out[("1", "0")][0])
    assert tasks["per host"]["h2"]["false_condition"] == "flag | int == 1" and tasks["per host"]["h2"]["skipped"]
    assert tasks["no_log"]["h1"]["censored"].startswith("the output has been hidden")
    assert tasks["the registered skip"]["h1"]["gone"]["skip_reason"] == "Conditional result was False"
    assert out[("1", "0")][0]["stats"]["h2"]["skipped"] == 8


# ------------------------------------------------------------------------------------------- run without a worker
RUN_PLAY = """
- hosts: g
  gather_facts: false
  tasks:
    - {name: a fact from host variables, ansible.builtin.set_fact: {doubled: "{{ flag | int * 2 }}", cacheable: true}}
    - {name: a fact from that fact, ansible.builtin.set_fact: {tripled: "{{ doubled | int + flag | int }}"}}
    - {name: registered, ansible.builtin.set_fact: {seen: "{{ hostvars['h1'].doubled }}"}, register: reg}
    - {name: the registered fact, ansible.builtin.debug: {var: reg}}
    - {name: a secret, ansible.builtin.set_fact: {secret: hunter2}, no_log: true}
    - {name: assert per host, ansible.builtin.assert: {that: [flag | int == 1], fail_msg: nope}, ignore_errors: true}
    - {name: assert quietly, ansible.builtin.assert: {that: [tripled | int >= 0], quiet: true}}
    - {name: verbosity 3, ansible.builtin.debug: {msg: hidden, verbosity: 3}}
    - {name: changed debug, ansible.builtin.debug: {msg: "{{ tripled }}"}, changed_when: true, notify: told}
    - {name: a templated condition, ansible.builtin.debug: {msg: warned}, when: "{{ flag | int == 1 }}"}
    - {name: run once, ansible.builtin.set_fact: {once: "{{ inventory_hostname }}"}, run_once: true}
    - {name: check mode, ansible.builtin.debug: {msg: "{{ ansible_check_mode }}"}, check_mode: true}
    - name: a rescued failure
      block:
        - {name: fail on h2, ansible.builtin.fail: {msg: "h2 fails"}, when: flag | int == 0}
      rescue:
        - {name: rescued, ansible.builtin.debug: {msg: "{{ ansible_failed_result.msg }}"}}
    - {name: an include, ansible.builtin.include_tasks: inc.yml}
    - {name: a role with its arguments, ansible.builtin.include_role: {name: r}, vars: {r_port: 8001}}
    - name: a role with a bad argument
      block:
        - {name: include it, ansible.builtin.include_role: {name: r}, vars: {r_port: nope}}
      rescue:
        - {name: refused, ansible.builtin.debug: {msg: "{{ ansible_failed_result.msg }}"}}
    - {name: an undefined variable, ansible.builtin.debug: {msg: "{{ nothing_here }}"}, ignore_errors: true}
    - {name: variables from a file per host, ansible.builtin.include_vars: {file: "vars-{{ flag }}.yml"}}
    - {name: a vars file that is not there, ansible.builtin.include_vars: {file: nowhere.yml}, ignore_errors: true}
    - {name: a loop, ansible.builtin.set_fact: {looped: "{{ item }}"}, loop: [1, 2]}
    - {name: a module, ansible.builtin.command: "true", changed_when: false}
    - {name: a debug of our own, debug: {msg: ours}}
    - name: every fact
      ansible.builtin.debug: {msg: "{{ [doubled, tripled, seen, once, looped, secret | length, from_file] }}"}
  handlers:
    - {name: told, ansible.builtin.debug: {msg: handled}}
"""


@pytest.mark.integration
def test_a_task_run_without_a_worker_reports_what_a_worker_reports(tmp_path):
    """The same play with every task in a worker and with RunInStrategy (and the skips): set_fact, assert, debug,
    fail, include_vars, a role's argument validation and the includes give every host the same results, facts,
    handlers, rescues, failures and recap, and loops, modules and an action plugin that is not Ansible's own still went
    to workers."""
    (tmp_path / "inc.yml").write_text("- {name: included, ansible.builtin.debug: {msg: included}}\n")
    (tmp_path / "vars-0.yml").write_text("from_file: zero\n")
    (tmp_path / "vars-1.yml").write_text("from_file: one\n")
    role = tmp_path / "roles" / "r"
    (role / "tasks").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "tasks" / "main.yml").write_text("- {name: in the role, ansible.builtin.debug: {msg: '{{ r_port }}'}}\n")
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    options:\n      r_port: {type: int, required: true}\n"
    )
    # A bare `debug` resolves to the playbook's own action_plugins/debug.py first: not Ansible's, so a worker's.
    (tmp_path / "action_plugins").mkdir()
    (tmp_path / "action_plugins" / "debug.py").write_text(
        "from ansible_collections.ansible.builtin.plugins.action.debug import ActionModule as Debug\n\n\n"
        "class ActionModule(Debug):\n"
        "    def run(self, tmp=None, task_vars=None):\n"
        "        return dict(super().run(tmp, task_vars), ours=True)\n"
    )
    inventory = "[g]\nh1 ansible_connection=local flag=1\nh2 ansible_connection=local flag=0\n"
    out = _run_both_ways(tmp_path, RUN_PLAY, inventory, [("0", "0"), ("1", "1")])
    assert out[("1", "1")][0] == out[("0", "0")][0]
    assert "0 host-task(s) skipped and 0 run without a worker, 58 given to workers" in out[("0", "0")][1]
    # Only the loop, the module and our own debug (2 hosts each) went to workers; h1's false `fail on h2` was skipped.
    assert (
        "autoglm_mitogen_linear: 1 host-task(s) skipped and 51 run without a worker, 6 given to workers"
        in out[("1", "1")][1]
    )
    tasks = _by_task(out[("1", "1")][0])
    assert tasks["every fact"]["h2"]["msg"] == [0, 0, 2, "h1", 2, 7, "zero"]
    assert tasks["every fact"]["h1"]["msg"][-1] == "one"
    assert tasks["a vars file that is not there"]["h1"]["failed"]  # and with the worker's message, compared above
    assert tasks["assert per host"]["h2"]["failed"] and tasks["assert per host"]["h2"]["msg"] == "nope"
    assert tasks["a secret"]["h1"]["censored"].startswith("the output has been hidden")
    assert tasks["rescued"]["h2"]["msg"] == "h2 fails"
    assert "r_port" in tasks["refused"]["h1"]["msg"]
    assert tasks["told"]["h1"]["msg"] == tasks["told"]["h2"]["msg"] == "handled"
    assert tasks["a debug of our own"]["h1"]["ours"] is True
    assert "'nothing_here' is undefined" in tasks["an undefined variable"]["h1"]["msg"]
    assert out[("1", "1")][0]["stats"] == out[("0", "0")][0]["stats"]


# ---------------------------------------------------------------------------------------------------- template code
class NoContext:
    """Stands in for Ansible's _TemplateCompileContext outside a compile of Ansible's (no backslash escaping)."""

    @staticmethod
    def current(optional=True):
        return None


class Env(jinja2.Environment):
    pass


FIELDS = ("block_start_string", "variable_start_string", "variable_end_string")
REAL_COMPILE = jinja2.Environment.compile


def make_cache(strategy, directory, counter):
    def counting_compile(env, *args):
        counter.append(args[0] if isinstance(args[0], str) else "node")
        return REAL_COMPILE(env, *args)

    assert strategy.TemplateCodeCache.usable_directory(str(directory)) is None
    return strategy.TemplateCodeCache(str(directory), counting_compile, Env, FIELDS, NoContext)


def render(env, code, **variables):
    return env.template_class.from_code(env, code, env.make_globals(None), None).render(**variables)


TEMPLATES = {
    "{{ name | upper }} on {{ port }}": "BLUE on 8001",
    "{% for p in ports if p is odd %}{{ p }},{% endfor %}": "8001,8003,",
    "{{ 'a' ~ name | length }}": "a4",
}


def test_a_second_process_loads_the_code_instead_of_compiling_and_renders_the_same(strategy, tmp_path):
    directory = tmp_path / "template-code"
    assert strategy.TemplateCodeCache.usable_directory(str(directory)) is None
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    env, compiled = Env(), []
    first = make_cache(strategy, directory, compiled)
    out = {t: render(env, first.compile(env, t), name="blue", port=8001, ports=[8001, 8002, 8003]) for t in TEMPLATES}
    assert out == TEMPLATES
    assert (first.misses, first.hits, len(compiled)) == (3, 0, 3)
    assert len([p for p in directory.iterdir() if not p.name.startswith(".tmp-")]) == 3

    again = []
    second = make_cache(strategy, directory, again)  # another worker: an empty memory, the same directory
    for t, want in TEMPLATES.items():
        assert render(env, second.compile(env, t), name="blue", port=8001, ports=[8001, 8002, 8003]) == want
        second.compile(env, t)  # and from its memory the second time
    assert again == [] and (second.misses, second.hits) == (0, 6)


def test_a_filter_that_now_takes_the_context_recompiles_its_templates(strategy, tmp_path):
    env, compiled = Env(), []
    env.filters["greet"] = lambda value: "hello " + value
    cache = make_cache(strategy, tmp_path / "c", compiled)
    assert render(env, cache.compile(env, "{{ name | greet }}"), name="blue") == "hello blue"

    @jinja2.pass_context
    def greet(context, value):
        return "hello %s from %s" % (value, context["site"])

    env.filters["greet"] = greet  # the plugin changed: its compiled call must pass the context now
    fresh = make_cache(strategy, tmp_path / "c", compiled)
    assert render(env, fresh.compile(env, "{{ name | greet }}"), name="blue", site="lab") == "hello blue from lab"
    assert compiled == ["{{ name | greet }}", "{{ name | greet }}"]
    assert render(env, cache.compile(env, "{{ name | greet }}"), name="blue", site="lab") == "hello blue from lab"


def test_other_delimiters_are_another_template(strategy, tmp_path):
    plain, other, compiled = Env(), Env(variable_start_string="[[", variable_end_string="]]"), []
    cache = make_cache(strategy, tmp_path / "c", compiled)
    assert render(plain, cache.compile(plain, "[[ x ]] {{ x }}"), x=1) == "[[ x ]] 1"
    assert render(other, cache.compile(other, "[[ x ]] {{ x }}"), x=1) == "1 {{ x }}"
    assert len(compiled) == 2


def test_a_damaged_entry_is_compiled_again(strategy, tmp_path):
    env, compiled = Env(), []
    make_cache(strategy, tmp_path / "c", compiled).compile(env, "{{ x }}")
    (entry,) = list((tmp_path / "c").iterdir())
    entry.write_bytes(b"not marshal data")
    cache = make_cache(strategy, tmp_path / "c", compiled)
    assert render(env, cache.compile(env, "{{ x }}"), x=7) == "7"
    assert cache.misses == 1 and len(compiled) == 2


def test_code_is_never_loaded_from_a_directory_others_may_write(strategy, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert "others may write to" in strategy.TemplateCodeCache.usable_directory(str(shared))
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    assert "belongs to uid 65534" in strategy.TemplateCodeCache.usable_directory(str(foreign))
    assert strategy.install_template_code_cache(str(shared)) is None


def test_ansibles_own_templating_renders_the_same_through_the_cache(strategy, tmp_path):
    """Ansible's Templar (filters, tests, backslash escaping in expressions, conditionals) with the cache installed,
    cold then warm, against the same templates without it."""
    from ansible._internal._templating import _jinja_bits
    from ansible.template import Templar, trust_as_template

    cases = [
        "{{ items | map('upper') | join(',') }}",
        "{{ 'a\\b' ~ '|' ~ (items | length) }}",
        "{{ {'k': items} | to_json }}",
        "{% if items is sequence %}seq{% endif %}",
    ]
    variables = {"items": ["x", "y"]}

    def run():
        templar = Templar(variables=variables)
        out = [templar.template(trust_as_template(c)) for c in cases]
        out.append(templar.evaluate_conditional(trust_as_template("items | length == 2")))
        return out

    want = run()
    original = _jinja_bits.AnsibleEnvironment.compile
    try:
        cache = strategy.install_template_code_cache(str(tmp_path / "c"))
        assert cache is not None
        assert run() == want and cache.misses > 0
        cache._memory.clear()  # as a fresh worker: from the directory only
        misses = cache.misses
        assert run() == want
        assert cache.misses == misses and cache.hits > 0
    finally:
        _jinja_bits.AnsibleEnvironment.compile = original
