# Copyright: autoglm.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mitogen's linear strategy for the lab, with less work in each forked worker.

Mitogen's planner (ansible_mitogen/planner.py, _load_collections) calls ansible.collections.list.list_collection_dirs()
for the first module of a collection that a process runs, and caches the answer per process. Ansible runs each task
of each host in a freshly forked worker process, so every worker that runs a collection's module (community.docker,
community.crypto, autoglm.fleet: a third of an unchanged site.yml's tasks) walked every collection directory again,
the ~100 collections of the ansible package included: a few hundred milliseconds of CPU each on the lab's 2 cores.
Here the list is worked out once, in the strategy's process, before any worker forks, and the workers inherit it.
It cannot change during a run (the same collections_path, the same installed collections).

The second thing it does: Ansible compiles every template it renders (task arguments, conditions, role variables)
from scratch, and since each worker is a fresh fork that dies after one task, the same few hundred templates are
compiled again and again (4 615 compiles of 937 distinct templates in an unchanged site.yml on the lab, a third of the
workers' CPU). With AUTOGLM_TEMPLATE_CODE_CACHE set to a directory (scripts/lib.sh lab_strategy sets
.cache/template-code), the Python code Jinja compiles a template to is kept there, keyed by everything the compiler
reads (see TemplateCodeCache), and loaded instead of compiled again. The directory must be the controller user's own,
mode 0700: loading code from it runs it.

The third: a task whose condition is false for a host still costs a forked worker, only to find that out
(SkipInStrategy): the strategy answers those itself, with the worker's result, unless AUTOGLM_SKIP_IN_STRATEGY=0.

The fourth: set_fact, assert, debug, fail, argument validation and the includes never touch the host, yet each costs
a forked worker per host as well (RunInStrategy): the strategy runs Ansible's own TaskExecutor for them in its own
process, unless AUTOGLM_RUN_IN_STRATEGY=0.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: autoglm_mitogen_linear
short_description: Mitogen's linear strategy with less work per worker (the lab's)
description:
  - Mitogen's C(mitogen_linear), but for three things. The list of installed collection directories that Mitogen's
    planner adds to a module's search path is worked out once, when the strategy loads, instead of in every worker
    process that runs a collection's module.
  - With E(AUTOGLM_TEMPLATE_CODE_CACHE) set to a directory, Jinja's compiled code of each template is kept there and
    loaded instead of compiled again.
  - A task whose condition is cleanly false for a host is answered in the strategy's process, with the result a
    worker would send, instead of a forked worker (E(AUTOGLM_SKIP_IN_STRATEGY=0) turns this off).
  - C(set_fact), C(assert), C(debug), C(fail), a role's argument validation, C(include_tasks) and C(include_role)
    (Ansible's own plugins, without a loop, until, async or delegate_to) run in the strategy's process through
    Ansible's TaskExecutor instead of a forked worker (E(AUTOGLM_RUN_IN_STRATEGY=0) turns this off).
  - The lab harness's (C(make lab), C(scripts/lib.sh lab_strategy)); not part of the collection.
author: autoglm.fleet contributors
"""

import contextlib
import hashlib
import importlib.util
import marshal
import os
import stat
import tempfile

# Mitogen is installed in the controller's venv (requirements.txt), so its package imports as any other.
import ansible.collections.list
import ansible_mitogen.loaders
import ansible_mitogen.mixins
import ansible_mitogen.planner
import ansible_mitogen.strategy
import jinja2
from ansible.release import __version__ as ANSIBLE_VERSION
from ansible.utils.display import Display
from jinja2 import nodes
from jinja2.utils import _PassArg

# The ansible-core releases whose private templating and executor internals the cache and the skips were written for.
SUPPORTED_CORE = ANSIBLE_VERSION.startswith(("2.19.", "2.20."))
COLLECTION_DIRS = tuple(path.decode("utf-8") for path in ansible.collections.list.list_collection_dirs())


def _load_collections(invocation):
    """ansible_mitogen.planner._load_collections, from the list worked out when the strategy loaded."""
    invocation._extra_sys_paths.update(COLLECTION_DIRS)


ansible_mitogen.planner._load_collections = _load_collections


class TemplateCodeCache:
    """Jinja's compiled code of each template, kept in a private directory across runs and processes.

    A key covers everything Jinja's compiler reads: the environment's class and delimiters/whitespace settings, its
    optimizer switch, Ansible's backslash escaping of the compile in progress, the template's text (or, for an
    expression Ansible has parsed already, the whole syntax tree), its name, filename and defer_init, and the
    versions of Python's bytecode, Jinja and ansible-core. The code also depends on how each filter and test the
    template names takes its arguments (pass_context and the like, read when the call is compiled): those are
    stored with the code and compared on every load, so a plugin that changes recompiles its templates. Anything
    unusual (a raw compile, Ansible's template debugging, an unreadable or foreign entry) compiles as usual.
    """

    FORMAT = 1

    def __init__(self, directory, compile_function, environment_class, override_fields, compile_context):
        self.directory = directory
        self._compile = compile_function
        self._environment_class = environment_class
        self._override_fields = override_fields
        self._compile_context = compile_context
        self._memory = {}
        self.hits = self.misses = 0
        self._salt = repr((self.FORMAT, importlib.util.MAGIC_NUMBER, jinja2.__version__, ANSIBLE_VERSION))

    @staticmethod
    def usable_directory(directory):
        """Create `directory` 0700 when missing; return None when it is the controller user's own and no one else
        may write to it, else the reason not to load code from it."""
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            st = os.lstat(directory)
        except OSError as exc:
            return "cannot create %s (%s)" % (directory, exc.strerror)
        if not stat.S_ISDIR(st.st_mode):
            return "%s is not a directory" % directory
        if st.st_uid != os.geteuid():
            return "%s belongs to uid %d, not to this user" % (directory, st.st_uid)
        if st.st_mode & 0o022:
            return "others may write to %s (mode %04o)" % (directory, stat.S_IMODE(st.st_mode))
        return None

    def _key(self, env, source, name, filename, defer_init):
        context = self._compile_context.current(optional=True)
        text = source if isinstance(source, str) else repr(source)
        return repr(
            (
                self._salt,
                type(env).__module__,
                type(env).__qualname__,
                tuple(getattr(env, field) for field in self._override_fields),
                None if context is None else bool(context.escape_backslashes),
                env.optimized,
                type(source).__name__ if not isinstance(source, str) else "str",
                str(text),
                name,
                filename,
                defer_init,
            )
        )

    @staticmethod
    def _calls(env, tree):
        """(kind, name, how the function takes its arguments) of each filter and test the template names."""
        out = set()
        for node in tree.find_all((nodes.Filter, nodes.Test)):
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            function = (env.filters if kind == "filter" else env.tests).get(node.name)
            passes = _PassArg.from_obj(function) if function is not None else None
            out.add((kind, node.name, None if function is None else getattr(passes, "name", "none")))
        return tuple(sorted(out, key=repr))

    @classmethod
    def _still_true(cls, env, calls):
        for kind, name, passes in calls:
            function = (env.filters if kind == "filter" else env.tests).get(name)
            now = None if function is None else getattr(_PassArg.from_obj(function), "name", "none")
            if now != passes:
                return False
        return True

    def compile(self, env, source, name=None, filename=None, raw=False, defer_init=False):
        if raw or not isinstance(env, self._environment_class) or getattr(env, "_debuggable_template_source", False):
            return self._compile(env, source, name, filename, raw, defer_init)
        key = self._key(env, source, name, filename, defer_init)
        entry = self._memory.get(key)
        if entry is not None and self._still_true(env, entry[0]):
            self.hits += 1
            return entry[1]
        path = os.path.join(self.directory, hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest())
        try:
            with open(path, "rb") as f:
                # The directory is this user's own, 0700 (usable_directory): nothing another user wrote is loaded.
                fmt, stored_key, calls, code = marshal.load(f)  # noqa: S302
            if fmt == self.FORMAT and stored_key == key and self._still_true(env, calls):
                self._memory[key] = (calls, code)
                self.hits += 1
                return code
        except (OSError, ValueError, EOFError, TypeError):
            pass
        self.misses += 1
        code = self._compile(env, source, name, filename, raw, defer_init)
        tree = source if not isinstance(source, str) else env._parse(source, name, filename)
        calls = self._calls(env, tree)
        self._memory[key] = (calls, code)
        self._store(path, (self.FORMAT, key, calls, code))
        return code

    def _store(self, path, entry):
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as f:
                marshal.dump(entry, f)
            os.replace(tmp, path)  # whole or not at all, whatever another worker writes at the same time
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def install_template_code_cache(directory, display=None):
    """Compile Ansible's templates through a TemplateCodeCache in `directory`; return it (None when not installed:
    an unusable directory, or an ansible-core whose templating this was not written for)."""
    try:
        from ansible._internal._templating import _jinja_bits  # private: absent or moved in another ansible-core

        environment_class = _jinja_bits.AnsibleEnvironment
        override_fields = _jinja_bits._TEMPLATE_OVERRIDE_FIELD_NAMES
        compile_context = _jinja_bits._TemplateCompileContext
    except (ImportError, AttributeError):
        return None
    if not SUPPORTED_CORE:
        return None
    why = TemplateCodeCache.usable_directory(directory)
    if why is not None:
        if display is not None:
            display.warning("autoglm_mitogen_linear: not caching compiled templates: %s" % why)
        return None
    original = environment_class.compile
    cache = TemplateCodeCache(directory, original, environment_class, override_fields, compile_context)

    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        return cache.compile(self, source, name, filename, raw, defer_init)

    compile.__wrapped__ = original
    environment_class.compile = compile
    return cache


if os.environ.get("AUTOGLM_TEMPLATE_CODE_CACHE"):
    TEMPLATE_CODE_CACHE = install_template_code_cache(os.environ["AUTOGLM_TEMPLATE_CODE_CACHE"], Display())


class SkipInStrategy:
    """A task whose condition is false for a host, answered in the strategy's process instead of a forked worker.

    Ansible forks a worker for every task and host, and the worker's first act is to evaluate the task's `when`: an
    unchanged site.yml on the lab skips about 180 host-tasks this way, each a fork of the 120 MB controller process, a
    pass through the worker's set-up and a result sent back (about 70 ms of the lab's 2 cores each). Here the strategy
    does what the worker would do before its conditional - the play context with the task's and host's overrides,
    post-validated, its connection variables added - and evaluates the condition with the same variables the worker
    gets. Only a clean False is answered here, with the result the worker builds (skip_reason, false_condition,
    _ansible_no_log) sent through the same results queue, so callbacks, `register` and the recap see what they see
    from a worker. Everything else goes on as before (to RunInStrategy, then to a worker): a true condition, an error
    or a warning while evaluating it, a loop (its condition is per item), delegate_to (its variables are worked out in
    the worker), a task with no condition, and an ansible-core this was not written for.
    """

    def __init__(self):
        self.answered = 0
        self._engine = self._warnings = self._raw_result = self._task_context = None
        try:
            from ansible._internal import _display_utils, _task
            from ansible._internal._templating._engine import TemplateEngine
            from ansible.executor.task_result import _RawTaskResult
        except ImportError:  # private modules: absent or moved in another ansible-core
            return
        if SUPPORTED_CORE:
            self._engine, self._raw_result = TemplateEngine, _RawTaskResult
            self._warnings, self._task_context = _display_utils.DeferredWarningContext, _task.TaskContext

    def result(self, loader, host, task, task_vars, play_context):
        """The worker's result for a task that a clean False condition skips on `host`, or None to run a worker."""
        if self._engine is None or not task.when or task.loop is not None or task.loop_with or task.delegate_to:
            return None
        try:
            with self._task_context(task), self._warnings(variables=task_vars) as warnings:
                templar = self._engine(loader=loader, variables=task_vars)
                context = play_context.set_task_and_variable_override(task=task, variables=task_vars, templar=templar)
                context.post_validate(templar=templar)
                if not context.remote_addr:
                    context.remote_addr = host.address
                variables = task_vars.copy()
                context.update_vars(variables)
                why = {}
                skip = not task._resolve_conditional(task.when, variables, result_context=why)
                result = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"} | why
                if skip:
                    task.update_result_no_log(templar, result)
            if not skip or warnings.get_warnings() or warnings.get_deprecation_warnings():
                return None
        except Exception:  # whatever it is, the worker meets it again and reports it as Ansible does
            return None
        self.answered += 1
        return self._raw_result(host=host, task=task, return_data=result, task_fields=task.dump_attrs())


class RunInStrategy:
    """A task whose action never touches the host, run in the strategy's process instead of a forked worker.

    About half of the host-tasks of an unchanged site.yml on the lab are such actions: set_fact, assert, debug, fail,
    include_vars (it reads the controller's files), a role's argument validation, include_tasks and include_role (120
    of 240 results on the 2 GPU hosts, before include_vars joined). A worker for each costs a fork of the controller,
    the worker's set-up and a result sent back; on the lab's 2 cores that is most of what such a task costs, and it
    grows with every host. Here the strategy runs Ansible's own TaskExecutor on a copy of the task (the worker
    post-validates its own copy; the strategy's must stay unvalidated for the next host), inside the same task
    context, with the same variables, play context and results queue, and sends its result as the worker does, so
    callbacks, `register`, handlers and the recap see what they see from a worker.

    Only these actions, and only Ansible's own plugins for them (a same-named action of a collection or an
    action_plugins/ folder goes to a worker), with `_requires_connection = False`; no loop, until, async or
    delegate_to (those send callbacks or sleep in the worker). Everything else goes to a worker as before, and so
    does everything with an ansible-core this was not written for.
    """

    ACTIONS = ("set_fact", "assert", "debug", "fail", "validate_argument_spec", "include_vars")
    INCLUDES = ("include_tasks", "include_role")

    def __init__(self):
        self.ran = 0
        self._executor = self._raw_result = self._task_context = None
        try:
            from ansible._internal import _task
            from ansible.executor.task_executor import TaskExecutor
            from ansible.executor.task_result import _RawTaskResult
            from ansible.plugins import loader
        except ImportError:  # private modules: absent or moved in another ansible-core
            return
        if SUPPORTED_CORE:
            self._executor, self._raw_result, self._task_context = TaskExecutor, _RawTaskResult, _task.TaskContext
            self._loader = loader
        self._eligible = {}

    def eligible(self, task):
        """Whether `task` runs here: one of ACTIONS by Ansible's own plugin that needs no connection, or an include;
        no loop, until, async or delegate_to."""
        if self._executor is None or task.loop is not None or task.loop_with or task.delegate_to:
            return False
        if task.until or task.async_val:
            return False
        action = task.action
        key = (action, tuple(task.collections or ()))  # a bare name resolves through the task's collections
        if key not in self._eligible:
            name = action.rpartition(".")[2]
            ok = False
            if action in (name, "ansible.builtin." + name):
                if name in self.INCLUDES:
                    ok = True
                elif name in self.ACTIONS:
                    cls = self._loader.action_loader.get(action, class_only=True, collection_list=task.collections)
                    if cls is not None and cls.__bases__[0] is ansible_mitogen.mixins.ActionModuleMixin:
                        cls = cls.__bases__[1]  # Mitogen's strategy mixes its helpers into every action class it loads
                    ok = (
                        cls is not None
                        and cls.__module__ == "ansible_collections.ansible.builtin.plugins.action." + name
                        and getattr(cls, "_requires_connection", True) is False
                    )
            self._eligible[key] = ok
        return self._eligible[key]

    def result(self, strategy, host, task, task_vars, play_context):
        """The result of running `task` for `host` here, as a worker would send it, or None to run a worker."""
        if not self.eligible(task):
            return None
        # The worker's are copies: its TaskExecutor post-validates the task and adds the registered result and the new
        # facts to the variables, and the strategy keeps both (the task for the next host, the variables for the
        # result's changed_when/failed_when and the debugger) as they were.
        own = task.copy(exclude_parent=False, exclude_tasks=True)
        with self._task_context(own):
            result = self._executor(
                host,
                own,
                task_vars.copy(),
                play_context,
                strategy._loader,
                self._loader.get_plugin_loader_namespace(),
                strategy._final_q,
                strategy._variable_manager,
            ).run()
        self.ran += 1
        return self._raw_result(host=host, task=own, return_data=result, task_fields=own.dump_attrs())


Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):
    """Mitogen's linear strategy; with AUTOGLM_SKIP_IN_STRATEGY not 0 (scripts/lib.sh lab_strategy leaves it on), a
    task a clean False condition skips on a host is answered without a worker (SkipInStrategy), and with
    AUTOGLM_RUN_IN_STRATEGY not 0 the actions that never touch the host run without one (RunInStrategy)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._skip_in_strategy = SkipInStrategy() if os.environ.get("AUTOGLM_SKIP_IN_STRATEGY", "1") != "0" else None
        self._to_workers = 0
        self._run_in_strategy = RunInStrategy() if os.environ.get("AUTOGLM_RUN_IN_STRATEGY", "1") != "0" else None

    def run(self, iterator, play_context, result=0):
        result = super().run(iterator, play_context, result)
        Display().vv(
            "autoglm_mitogen_linear: %d host-task(s) skipped and %d run without a worker, %d given to workers"
            % (
                0 if self._skip_in_strategy is None else self._skip_in_strategy.answered,
                0 if self._run_in_strategy is None else self._run_in_strategy.ran,
                self._to_workers,
            )
        )
        return result

    def _queue_task(self, host, task, task_vars, play_context):
        raw = None
        if self._skip_in_strategy is not None:
            raw = self._skip_in_strategy.result(self._loader, host, task, task_vars, play_context)
        if raw is None and self._run_in_strategy is not None:
            raw = self._run_in_strategy.result(self, host, task, task_vars, play_context)
        if raw is None:
            self._to_workers += 1
            return super()._queue_task(host, task, task_vars, play_context)
        # What Ansible's _queue_task and the worker do around the task's run, in the same order.
        self._queued_task_cache[(host.name, task._uuid)] = {
            "host": host,
            "task": task,
            "task_vars": task_vars,
            "play_context": play_context,
        }
        self._tqm.send_callback("v2_runner_on_start", host, task)
        self._final_q.send_task_result(raw)
        self._pending_results += 1
        return None
