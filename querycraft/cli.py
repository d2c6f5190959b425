"""Command line: ``python -m querycraft service=<stage> [overrides]``.

Overrides are checked by composing the config once before Hydra starts the run, so a typo
(``peft.rr=8``) or an unknown preset (``model=nosuch``) gets a one-paragraph message naming
the bad key and the valid ones, in about a second and before anything heavy is imported.
"""

from __future__ import annotations

import difflib
import importlib.abc
import importlib.util
import logging
import re
import sys
import textwrap
import warnings
from typing import Any

import hydra
from omegaconf import DictConfig

from querycraft.config import CONFIG_DIR, check_config, register_configs
from querycraft.errors import QueryCraftError
from querycraft.runs import file_system_problem, folder_problem
from querycraft.services import get_service

log = logging.getLogger("querycraft")

HYDRA_FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                          "--experimental-rerun", "--info", "-i", "--package", "-p",
                          "--cfg", "-c", "--shell-completion", "-sc"}


# conf/ folders that hold no Hydra config group: files other tools read.
NOT_GROUPS = {"accelerate"}


def accelerate_problem(overrides: list[str]) -> str | None:
    """The message for ``accelerate=ddp`` (or ``+accelerate=...``): conf/accelerate/ holds
    the files ``accelerate launch`` reads, not a choice of the QueryCraft config."""
    for arg in overrides:
        key, sep, value = arg.lstrip("+~").partition("=")
        if sep and key == "accelerate":
            choices = ", ".join(_group_choices("accelerate"))
            return (f"accelerate={value} is not a setting: conf/accelerate/ holds the files "
                    f"that `accelerate launch` reads ({choices}), and training on several "
                    f"GPUs is started by it, e.g. `accelerate launch --config_file "
                    f"conf/accelerate/{value or 'ddp'}.yaml --num_processes <GPUs> -m querycraft "
                    f"service=finetune model=...` (docs/FINETUNE.md, \"Several GPUs\"); drop "
                    f"accelerate={value} from the command line.")
    return None


def run(cfg: DictConfig) -> Any:
    """Check the config, then call the entry function of the service it names (a module of
    querycraft/services/, found by discovery). Tests call this directly."""
    check_config(cfg)
    return get_service(cfg.service.name).entry(cfg)


def _group_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def _keys_at(path: list[str], group_overrides: list[str]) -> tuple[str, list[str]]:
    """The deepest existing node along ``path`` and its keys, in the config as composed."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        try:
            cfg = compose("config", overrides=group_overrides)
        except Exception:  # a group choice is the problem too: the keys without the choices
            cfg = compose("config")
    node: Any = cfg
    found: list[str] = []
    for part in path[:-1]:
        if isinstance(node, DictConfig) and part in node:
            node = node[part]
            found.append(part)
        else:
            break
    keys = sorted(k for k in node if k != "hydra") if isinstance(node, DictConfig) else []
    return ".".join(found), keys


def explain_override_error(err: Exception, overrides: list[str]) -> str:
    """Turn a Hydra/OmegaConf composition error into a message that says what to do."""
    text, cause = str(err), err.__cause__
    while cause is not None:  # Hydra wraps the OmegaConf error that names the key and type
        text += "\n" + str(cause)
        cause = cause.__cause__
    missing_group = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if missing_group:
        group, choice = missing_group.groups()
        choices = _group_choices(group)
        choices = [c for c in choices if c != "schema"]
        new_one = ("a new service is a module in querycraft/services/ plus its YAML file there"
                   if group == "service" else "add your own YAML file there to make a new one")
        return (f"Unknown choice '{choice}' for config group '{group}'.{_suggest(choice, choices)}"
                f" Valid choices: {', '.join(choices)} (the files in conf/{group}/; {new_one}).")
    bad_key = re.search(r"Could not override '([^']+)'", text) or re.search(
        r"full_key: ([\w.\[\]]+)", text)
    if bad_key:
        key = bad_key.group(1)
        inner = re.search(r"full_key: ([\w.\[\]]+)", text)
        if inner and inner.group(1).startswith(key + "."):  # a new key inside a map
            new_key = inner.group(1)
            return (f"'{key}' has no key '{new_key[len(key) + 1:]}' yet: a map's new keys "
                    f"need a leading +, e.g. +{new_key}=<value> (or write them under "
                    f"{key.split('.')[0]}: in a YAML file of conf/).")
        # The presets chosen, and Hydra's own settings: hydra.searchpath can bring presets
        # (a service's YAML) from another config folder.
        group_overrides = [o for o in overrides if "=" in o and not o.startswith(("+", "~"))
                           and ("." not in o.split("=", 1)[0] or o.startswith("hydra."))]
        type_problem = re.search(r"(Value '.*?' (?:of type '\w+' )?could not be converted to "
                                 r"\w+|Value '.*?' is not a valid \w+[^\n]*)", text)
        if type_problem:
            return (f"Config key '{key}' got a value of the wrong type: {type_problem.group(1)}. "
                    f"Check the value you gave on the command line or in conf/.")
        parent, keys = _keys_at(key.split("."), group_overrides)
        leaf = key.split(".")[-1] if parent == ".".join(key.split(".")[:-1]) else \
            key.split(".")[len(parent.split(".")) if parent else 0]
        where = f"'{parent}'" if parent else "the top level"
        return (f"Unknown config key '{key}': {where} has no key '{leaf}'.{_suggest(leaf, keys)} "
                f"Valid keys in {where}: {', '.join(keys)}.")
    one_line = " ".join(text.split())
    return f"The command line could not be applied to the config: {one_line}"


def diagnose_overrides(overrides: list[str]) -> str | None:
    """Compose the config with ``overrides``; a message if that fails, or if the run folder
    cannot be written (:func:`output_problem`), else None."""
    from hydra import compose, initialize_config_dir

    problem = accelerate_problem(overrides)
    if problem:
        return problem
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            cfg = compose("config", overrides=overrides)
    except Exception as err:  # every composition failure becomes a message, never a traceback
        return explain_override_error(err, overrides)
    return output_problem(cfg, overrides)


def output_problem(cfg: DictConfig, overrides: list[str]) -> str | None:
    """Why a run folder cannot be made: Hydra creates it before QueryCraft's code runs, and
    a read-only or misplaced folder would end in its traceback. Checked: the folder Hydra
    makes (``hydra.run.dir`` when given, else under ``paths.output_dir``) and ``paths.run_dir``
    when given."""
    given = {key: value for key, _, value in (o.partition("=") for o in overrides)}
    folders = [("hydra.run.dir", given.get("hydra.run.dir"))]
    if not folders[0][1]:
        try:
            folders = [("paths.output_dir", cfg.paths.output_dir)]
        except Exception:  # an interpolation that cannot resolve here: Hydra will say so
            folders = []
    folders.append(("paths.run_dir", given.get("paths.run_dir")))
    for setting, folder in folders:
        problem = folder and folder_problem(folder, setting)
        if problem:
            return problem
    return None


def _plain_overrides(argv: list[str]) -> list[str] | None:
    """The key=value arguments, or None when Hydra flags make our own check inapplicable."""
    if any(a in ("-m", "--multirun", "--help", "-h", "--hydra-help", "--version") for a in argv):
        return None
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def secret_on_command_line(argv: list[str]) -> str | None:
    """A message when a password is given on the command line (shell history, ``ps``, Hydra's
    multirun.yaml would all keep it); None otherwise."""
    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        if key.endswith("password") and value not in ("", "null"):
            return (f"Do not put a password on the command line ({key}=...): it would stay in "
                    "your shell history and be visible to other users. Export it instead, "
                    "e.g. `export QC_DB_PASSWORD=...`; conf/db/*.yaml read it from there.")
        if re.search(r"://[^:/@\s]*:[^@\s]+@", value):
            return (f"The URL given to {key} holds a password: it would stay in your shell "
                    "history and be visible to other users. Leave the password out of the URL "
                    "and export it as QC_DB_PASSWORD, or put the whole URL in QC_DB_URL.")
    return None


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def _hydra_entry(cfg: DictConfig) -> None:
    # Hydra's log file is in the run folder: on a full disk its every line would print a
    # logging traceback; the run's own error says what happened.
    logging.raiseExceptions = False
    try:
        run(cfg)
    except QueryCraftError as err:
        log.error("%s", err)
        sys.exit(2)
    except OSError as err:
        # A file or folder outside any run (a model folder, a file setting): explained when
        # a user can act on it; anything else keeps its traceback.
        problem = file_system_problem(err, "the setting that names it")
        if problem is None:
            raise
        log.error("%s", problem)
        sys.exit(2)
    except KeyboardInterrupt:
        log.error("Interrupted. Finished outputs were kept; run again to continue.")
        sys.exit(130)


HELP_FLAGS = ("--help", "-h")

COMMON_OVERRIDES = (
    ("service=<name>", "the stage to run (default: pipeline, every stage in order)"),
    ("model=<preset>", "the base model, a file of conf/model/ (default: tiny, offline)"),
    ("data=<preset> data.path=FILE", "the examples: sample, csv_db, spider, alpaca_json"),
    ("db=<engine> db.path=FILE", "the database the SQL runs on: sqlite, postgres, mysql, db2"),
    ("peft=<preset> peft.r=16", "the adapter: lora, qlora, dora, lora-8bit; its settings"),
    ("train.epochs=3 train.max_steps=N", "how long finetune trains"),
    ('question="How many orders?"', "with service=infer or ask: answer one question"),
    ("paths.output_dir=DIR", "where run folders go (default: output/)"),
    ("resume=true", "continue the newest unfinished run of the service"),
    ("experiment=smoke", "a file of conf/experiment/: several settings at once"),
)


def _summary_line(doc: str | None, width: int = 84) -> str:
    """A module docstring's first sentence, without its "Name: " lead, cut to ``width``."""
    paragraph = " ".join((doc or "").strip().split("\n\n", 1)[0].split())
    paragraph = re.sub(r"^\w+: ", "", paragraph)
    sentence = re.split(r"(?<=[.;])\s", paragraph, maxsplit=1)[0].rstrip(".;")
    if len(sentence) > width:  # the asides go first
        sentence = re.sub(r"\s*\([^()]*\)", "", sentence)
    if len(sentence) > width:
        sentence = sentence[:width].rsplit(" ", 1)[0].rstrip(",;:(") + " …"
    return sentence[:1].upper() + sentence[1:]


def usage() -> str:
    """What ``--help`` prints: the services (from the service registry), the config
    groups, the common overrides and where the full config is."""
    from querycraft.services import services

    lines = ["QueryCraft: fine-tune LLMs for text-to-SQL, and evaluate them.", "",
             "usage: python -m querycraft [service=<name>] [group=<choice> ...] "
             "[key=value ...]", "", "Services (service=<name>):"]
    for name, service in services().items():
        module = sys.modules.get(service.entry.__module__)
        lines.append(f"  {name:<10} {_summary_line(module.__doc__ if module else None)}")
    lines += ["", "Config groups (group=<choice>, a file of conf/<group>/):"]
    for group in sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir()):
        if group in NOT_GROUPS or group == "service":
            continue
        choices = [c for c in _group_choices(group) if c != "schema"]
        if choices:
            lines += textwrap.wrap(", ".join(choices), 92, initial_indent=f"  {group:<10} ",
                                   subsequent_indent=" " * 13)
    lines += ["", "Common overrides:"]
    lines += [f"  {flag:<34} {what}" for flag, what in COMMON_OVERRIDES]
    lines += ["", "The full config, every key with its value: python -m querycraft --cfg job "
              "[overrides]",
              "(add service=<name> for that service's settings). Hydra's own options: "
              "--hydra-help.",
              "Several GPUs: accelerate launch --config_file conf/accelerate/ddp.yaml -m "
              "querycraft service=finetune",
              "Docs: README.md and docs/ (ARCHITECTURE.md first, then a page per topic)."]
    return "\n".join(lines)


class _QuietTransformers(importlib.abc.MetaPathFinder):
    """Turns off transformers' own progress bars ("Loading weights", "Writing model
    shards") as soon as transformers is imported, without importing it here (a second on
    every command). QueryCraft's bars (tqdm) and the hub's download bars stay."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "transformers.utils.logging":
            return None
        sys.meta_path.remove(self)  # once, and the real finders below find the module
        spec = importlib.util.find_spec(name)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_quiet(module: Any) -> None:
            exec_module(module)
            module.disable_progress_bar()

        loader.exec_module = exec_then_quiet  # type: ignore[method-assign]
        return spec


def quiet_transformers_progress() -> None:
    """Silence transformers' progress bars for this process (see _QuietTransformers)."""
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()
    elif not any(isinstance(f, _QuietTransformers) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTransformers())


def main() -> None:
    # Deprecation chatter from inside transformers/peft says nothing a user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    quiet_transformers_progress()
    register_configs()
    if any(a in HELP_FLAGS for a in sys.argv[1:]):
        print(usage())
        sys.exit(0)
    secret = secret_on_command_line(sys.argv[1:])
    if secret:
        print(f"querycraft: {secret}", file=sys.stderr)
        sys.exit(2)
    overrides = _plain_overrides(sys.argv[1:])
    if overrides is not None:
        problem = diagnose_overrides(overrides)
        if problem:
            print(f"querycraft: {problem}", file=sys.stderr)
            sys.exit(2)
    _hydra_entry()
