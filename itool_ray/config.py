"""Typed job configuration: YAML file + ``key.path=value`` overrides, validated up front.

Every section is a frozen pydantic model with ``extra="forbid"``, so a misspelt key or a
value of the wrong kind fails before any actor starts, with an error naming the key and what
is allowed. YAML is read with a loader that refuses duplicate keys and alias expansion past
``MAX_YAML_VALUES`` values (a "billion laughs" file), and every YAML or validation error is a
``ConfigError`` whose message names the file, line or key and never echoes a long value.

The engine and tree-manager sections are generated from their settings dataclasses
(``EngineConfig``, ``ManagerSettings``): each setting is defined once, with its type, its
default and its documentation, and every one of them can be set from a job config.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from itool_ray.policy.config import EngineConfig
from itool_ray.rollout.manager import ManagerSettings

M = TypeVar("M", bound=BaseModel)

MAX_YAML_VALUES = 10_000
"""Most values (scalars, lists, mappings, counted once per use through an alias) one YAML
document may expand to: far above any job config, far below a billion laughs."""
MAX_CONFIG_BYTES = 1_000_000
_ECHO = 200  # characters of a value echoed in an error message


class Section(BaseModel):
    """Base of every config section: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it and what is allowed."""


def clip(text: str, limit: int = _ECHO) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more chars]"


# ---- YAML -----------------------------------------------------------------------------------
class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping holding the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *base': keys given beside it override the merged ones
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable key: SafeLoader reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {clip(repr(key), 80)} (first given on line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node, where: str) -> None:
    """Refuse a node graph that expands to more than ``MAX_YAML_VALUES`` values (aliases
    share nodes, so the graph is small while its expansion can be huge) or that is cyclic."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(c)] for c in _children(node))
            if total > MAX_YAML_VALUES:
                raise ConfigError(
                    f"{where}:{node.start_mark.line + 1}: YAML expands to more than "
                    f"{MAX_YAML_VALUES} values (aliases repeated inside aliases?); write the "
                    f"values out"
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ConfigError(f"{where}:{node.start_mark.line + 1}: recursive YAML alias")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _yaml_error(err: yaml.YAMLError, where: str) -> ConfigError:
    """One line naming the file, line and column of a YAML error."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    loc = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark is not None else where
    problem = getattr(err, "problem", None) or (str(err).splitlines() or ["?"])[0]
    context = getattr(err, "context", None)
    detail = f"{problem} ({context})" if context else problem
    return ConfigError(f"{loc}: invalid YAML: {clip(detail)}")


def load_yaml(text: str, where: str = "<yaml>") -> Any:
    """Parse one YAML document safely: ``yaml.safe_load`` plus refusal of duplicate keys,
    of cycles and of alias expansion beyond ``MAX_YAML_VALUES``; errors are one-line
    ``ConfigError`` s naming ``where`` and the line."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise _yaml_error(e, where) from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deep") from None
    finally:
        loader.dispose()


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"mcts.c_puct=1.5"`` -> (["mcts", "c_puct"], 1.5); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {clip(text, 80)!r}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {clip(text, 80)!r}: empty key")
    value = load_yaml(raw, f"override {clip(text, 80)!r}") if raw.strip() else ""
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``a.b.c=value`` in a nested dict (creating sections as needed)."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"override {clip(text, 80)!r}: {where} is not a section")
            node = child
        node[parts[-1]] = value
    return data


_MAX_ERRORS = 20


def _explain(cls: type[BaseModel], err: ValidationError) -> str:
    errors = err.errors()
    lines = [f"invalid {cls.__name__} configuration:"]
    for e in errors[:_MAX_ERRORS]:
        where = clip(".".join(str(p) for p in e["loc"]), 120) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key; allowed here: {_allowed(cls, e['loc'][:-1])}")
        else:
            msg = clip(e["msg"].removeprefix("Value error, "), 400)
            got = f" (got {clip(repr(e.get('input')))})" if e["loc"] else ""
            lines.append(f"  {where}: {msg}{got}")
    if len(errors) > _MAX_ERRORS:
        lines.append(f"  ... and {len(errors) - _MAX_ERRORS} more")
    return "\n".join(lines)


def _allowed(cls: type[BaseModel], loc: tuple) -> str:
    model: Any = cls
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return "?"
        model = field.annotation
    fields = getattr(model, "model_fields", None) or getattr(model, "__dataclass_fields__", {})
    return ", ".join(sorted(fields))


def merge_defaults(default: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` laid over the values of ``default``, section by section: a key set inside a
    section keeps that section's other defaults (``mcts.simulations=4`` leaves the job's own
    ``mcts.k``); any other value (numbers, lists, plain mappings) is replaced whole."""
    merged: dict[str, Any] = dict(default.model_extra or {})
    fields = type(default).model_fields
    for key, value in data.items():
        current = getattr(default, key) if key in fields else merged.get(key)
        if isinstance(current, BaseModel) and isinstance(value, dict):
            merged[key] = merge_defaults(current, value)
        else:
            merged[key] = value
    return merged


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML job config (``{}`` for an empty file)."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read the config file ({e.strerror or e})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: {len(raw)} bytes; a config file is at most {MAX_CONFIG_BYTES}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{where}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None
    loaded = load_yaml(text, where)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return loaded


def load_config(
    cls: type[M], path: str | Path | None = None, overrides: list[str] | None = None
) -> M:
    """Build ``cls`` from an optional YAML file plus overrides; raise ``ConfigError``."""
    data: dict[str, Any] = read_config_file(path) if path is not None else {}
    data = apply_overrides(data, list(overrides or []))
    try:
        return cls.model_validate(merge_defaults(cls(), data))
    except ValidationError as e:
        raise ConfigError(_explain(cls, e)) from None


def load_job_config(cls: type[M], path: str | Path | None, overrides: list[str] | None) -> M:
    """For a job's command line: log at INFO, and turn a ``ConfigError`` into a clean exit
    that prints what is wrong (before any actor starts)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return load_config(cls, path, overrides or [])
    except ConfigError as e:
        raise SystemExit(str(e)) from None


# ---- sections shared by the jobs ------------------------------------------------------------
def _attribute_docs(cls: type) -> dict[str, str]:
    """The ``Attributes:`` entries of a Google-style class docstring: name -> text (an
    entry ``a / b: text`` documents both)."""
    docs: dict[str, str] = {}
    lines = (inspect.getdoc(cls) or "").splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == "Attributes:"), None)
    if start is None:
        return docs
    names: list[str] = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break  # the next docstring section
        m = re.match(r"^ {4}(\w+(?:\s*/\s*\w+)*):\s*(.*)$", line)
        if m:
            names = [n.strip() for n in m.group(1).split("/")]
            docs.update(dict.fromkeys(names, m.group(2)))
        elif names and line.strip():
            for n in names:
                docs[n] += " " + line.strip()
    return docs


class SettingsSection(Section):
    """A section generated from a frozen settings dataclass (:func:`settings_section`): one
    pydantic field per dataclass field, with the dataclass's type, default and documentation,
    so each setting is defined once. Validated by building the dataclass (its
    ``__post_init__`` checks) with placeholder values for the fields the job provides."""

    _target: ClassVar[type]
    _job_fields: ClassVar[dict[str, Any]] = {}

    def settings(self) -> dict[str, Any]:
        """The dataclass fields this section holds, by name."""
        names = {f.name for f in dataclasses.fields(self._target)}
        return {k: getattr(self, k) for k in type(self).model_fields if k in names}

    def build_settings(self, **job: Any) -> Any:
        """The dataclass, with the fields the job provides (``job``) added."""
        return self._target(**self.settings(), **job)

    @model_validator(mode="after")
    def _validated_by_the_dataclass(self) -> SettingsSection:
        try:
            self.build_settings(**self._job_fields)
        except (TypeError, ValueError) as e:
            raise ValueError(str(e)) from None
        return self


def settings_section(
    name: str,
    base: type[SettingsSection],
    *,
    doc: str,
    constraints: dict[str, dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> type[SettingsSection]:
    """Generate the section ``name`` from ``base._target``'s fields, leaving out the fields
    the job provides (``base._job_fields``). ``constraints``: extra pydantic bounds on some
    fields (``{"x": {"ge": 0}}``), on top of the dataclass's own checks; ``extra``: fields of
    the section that are not settings of the dataclass (``(type, Field(...))``)."""
    target = base._target
    hints = typing.get_type_hints(target)
    docs = _attribute_docs(target)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(target):
        if f.name in base._job_fields:
            continue
        bounds = (constraints or {}).get(f.name, {})
        if f.default is not dataclasses.MISSING:
            info = Field(f.default, description=docs.get(f.name), **bounds)
        elif f.default_factory is not dataclasses.MISSING:
            info = Field(default_factory=f.default_factory, description=docs.get(f.name), **bounds)
        else:
            raise TypeError(f"{target.__name__}.{f.name} has no default: make it a job field")
        fields[f.name] = (hints[f.name], info)
    fields.update(extra or {})
    section = create_model(name, __base__=base, __module__=__name__, **fields)
    section.__doc__ = doc
    section.__qualname__ = name
    return section


class _EngineBase(SettingsSection):
    _target = EngineConfig
    # given by the job (its model folder, seed and weight-sync mode), not by the section
    _job_fields = {"model": "<model>", "seed": 0, "enable_lora": True, "weight_sync": False}

    def build(
        self, model_dir: str, *, enable_lora: bool = True, seed: int = 0, weight_sync: bool = False
    ) -> EngineConfig:
        return self.build_settings(
            model=str(model_dir), enable_lora=enable_lora, seed=seed, weight_sync=weight_sync
        )


EngineSection = settings_section(
    "EngineSection",
    _EngineBase,
    doc="vLLM settings of the policy replicas: every field of ``itool_ray.policy.EngineConfig`` "
    "except the model, seed, enable_lora and weight_sync, which the job sets.",
)


class ReplicaSection(Section):
    """How many policy replicas, and what each asks Ray for.

    ``resources`` are custom Ray resources (e.g. ``{rollout_slot: 1}``) that make the
    autoscaler add nodes offering them; on GPU nodes set ``num_gpus: 1``.
    """

    count: int = Field(2, ge=1, description="replicas started with the job (the minimum)")
    max_count: int | None = Field(
        None, ge=1, description="autoscaling: grow up to this many while trees wait; None: fixed"
    )
    scale_up_after_s: float = Field(2.0, ge=0, description="trees waited this long: grow")
    idle_timeout_s: float = Field(30.0, ge=0, description="an added replica idle this long: stop")
    num_cpus: float = Field(1, ge=0)
    num_gpus: float = Field(0, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)
    max_restarts: int = Field(3, ge=0)
    temperature: float = Field(1.0, ge=0)
    env: dict[str, str] = Field(
        default_factory=lambda: {
            # the KV-cache size is engine.cpu_kvcache_gb (a value set here takes precedence)
            # one engine step on a busy CPU host can pass vLLM's 300 s default and kill it
            "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "1800",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> ReplicaSection:
        if self.max_count is not None and self.max_count < self.count:
            raise ValueError(f"max_count ({self.max_count}) must be >= count ({self.count})")
        return self

    def autoscale(self):
        """``AutoscaleSettings`` when ``max_count`` > ``count``, else None (fixed pool)."""
        if self.max_count is None or self.max_count <= self.count:
            return None
        from itool_ray.rollout.autoscale import AutoscaleSettings

        return AutoscaleSettings(
            min_replicas=self.count,
            max_replicas=self.max_count,
            up_after_s=self.scale_up_after_s,
            idle_s=self.idle_timeout_s,
        )


class _ManagerBase(SettingsSection):
    _target = ManagerSettings

    def build(self) -> ManagerSettings:
        return self.build_settings()


ManagerSection = settings_section(
    "ManagerSection",
    _ManagerBase,
    doc="The tree manager: every field of ``itool_ray.rollout.ManagerSettings``, plus the "
    "CPUs its actor asks Ray for.",
    constraints={
        "checkpoint_every_s": {"ge": 0},
        "revive_every_s": {"gt": 0},
        "keep_trees": {"ge": 0},
    },
    extra={"num_cpus": (float, Field(0.5, ge=0, description="CPUs of the manager actor"))},
)


class _DataclassSection(Section):
    """A section holding the fields of a frozen settings dataclass (``from_dict``), validated
    by that class when the configuration is loaded."""

    model_config = ConfigDict(extra="allow", frozen=True)
    _target: ClassVar[tuple[str, str]]

    def build(self):
        module, name = self._target
        cls = getattr(importlib.import_module(module), name)
        return cls.from_dict(dict(self.model_extra or {}))

    def model_post_init(self, __context: Any) -> None:
        try:
            self.build()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None


class MCTSSection(_DataclassSection):
    """Search settings: any field of ``itool_ray.mcts.MCTSConfig``, validated by it."""

    _target = ("itool_ray.mcts", "MCTSConfig")


class LoraSection(_DataclassSection):
    """LoRA shape: any field of ``itool_ray.train.LoraSettings``."""

    _target = ("itool_ray.train.config", "LoraSettings")


class SFTSection(_DataclassSection):
    """Warm-up SFT: any field of ``itool_ray.train.SFTSettings``."""

    _target = ("itool_ray.train.config", "SFTSettings")


class DPOSection(_DataclassSection):
    """Preference optimisation: any field of ``itool_ray.train.DPOSettings``."""

    _target = ("itool_ray.train.config", "DPOSettings")
