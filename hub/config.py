"""pydantic models for hub.yaml, and ``load_config`` which reports every problem with file and line.

Models forbid unknown keys. Checks that need more than one field (which keys a scheme takes,
whether its secrets decode) live in ``problems()`` methods so each problem points at its own key.
Secrets are ``SecretStr``: reprs, logs and messages never show them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, StringConstraints, ValidationError, field_validator,
)

from hub import signatures
from hub.errors import ConfigError, Problem, format_path
from hub.yamlsrc import YamlDoc, load

Loc = tuple[str | int, ...]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def problems(self) -> Iterator[tuple[Loc, str]]:
        """Cross-field checks; yields (location relative to this model, message)."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) \
                else [(None, value)]
            for key, child in children:
                if isinstance(child, StrictModel):
                    prefix: Loc = (name,) if key is None else (name, key)
                    for loc, msg in child.problems():
                        yield (*prefix, *loc), msg


class ServerConfig(StrictModel):
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port to listen on.")
    max_body_bytes: int = Field(1_048_576, gt=0, le=104_857_600, description="Largest webhook body accepted (413 above).")
    access_log: bool = Field(False, description="Log every request (costs about half the throughput).")
    max_pending_writes: int = Field(10_000, gt=0, description="Writes queued for the store before answering 503.")


class StorageConfig(StrictModel):
    path: str = Field("./hub.db", description="SQLite file, relative to the config file's folder.")
    busy_timeout_ms: int = Field(5_000, ge=0, description="How long a write waits for another process's lock.")
    synchronous: Literal["full", "extra"] = Field("full", description="SQLite synchronous level: a 202 means on disk.")


class VerifyConfig(StrictModel):
    scheme: Literal["hmac-sha256", "github", "standard-webhooks", "stripe", "slack", "shopify", "token"] = Field(
        description="How the sender signs: see docs/configuration.md for each scheme's headers.")
    secrets: list[SecretStr] = Field(min_length=1, description="Several secrets = rotation; all are tried.")
    header: str | None = Field(None, description="hmac-sha256 and token: the header carrying the signature/token.")
    prefix: str = Field("", description='hmac-sha256: text before the signature, e.g. "sha256=".')
    encoding: Literal["hex", "base64"] = Field("hex", description="hmac-sha256: how the signature is encoded.")
    tolerance_secs: int = Field(300, gt=0, le=86_400, description="Timestamped schemes: allowed clock difference.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        header_schemes = {"hmac-sha256", "token"}
        given = self.model_fields_set
        if self.scheme in header_schemes and not self.header:
            yield ("header",), f"required for scheme {self.scheme}"
        if self.scheme not in header_schemes and "header" in given:
            yield ("header",), f"not used by scheme {self.scheme} (its header is fixed); remove it"
        for key in ("prefix", "encoding"):
            if key in given and self.scheme != "hmac-sha256":
                yield (key,), f"only used by scheme hmac-sha256; remove it"
        if "tolerance_secs" in given and self.scheme not in signatures.TIMESTAMPED:
            yield ("tolerance_secs",), f"scheme {self.scheme} signs no timestamp; remove it"
        try:
            self.build()
        except ValueError as exc:
            yield ("secrets",), str(exc)

    def build(self) -> signatures.Scheme:
        return signatures.build(
            self.scheme, [s.get_secret_value() for s in self.secrets], header=self.header,
            prefix=self.prefix, encoding=self.encoding, tolerance=self.tolerance_secs,
        )


class SourceConfig(StrictModel):
    verify: VerifyConfig = Field(description="How requests to /hooks/<name> are verified.")
    idempotency_key: str | None = Field(None, description="JSON pointer to the sender's event id in the body, e.g. /id.")
    adapter: Name = Field("generic", description="Which adapter turns this source's events into findings.")

    @field_validator("idempotency_key")
    @classmethod
    def _pointer(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"must be a JSON pointer starting with '/', e.g. /{value.lstrip('#')}")
        return value

    def id_pointer(self) -> str | None:
        """The configured pointer, else the scheme's default (Stripe's event id); None if the scheme has an id header."""
        return self.idempotency_key or signatures.DEFAULT_ID_POINTER.get(self.verify.scheme)


class HubConfig(StrictModel):
    server: ServerConfig = Field(ServerConfig(), description="The HTTP listener.")
    storage: StorageConfig = Field(StorageConfig(), description="The SQLite store.")
    sources: dict[Name, SourceConfig] = Field(default_factory=dict, description="Inbound webhooks by name.")

    _file: str = PrivateAttr("<config>")
    _base_dir: Path = PrivateAttr(Path("."))
    _notes: list[Problem] = PrivateAttr(default_factory=list)

    @property
    def notes(self) -> list[Problem]:
        """Warnings that do not stop the hub (a secret taken from the file's default, ...)."""
        return self._notes

    @property
    def file(self) -> str:
        return self._file

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self._base_dir / p

    @property
    def db_path(self) -> Path:
        return self.resolve(self.storage.path)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> HubConfig:
    """Load, interpolate and validate; raises ConfigError listing every problem."""
    doc = load(path, env)
    return validate(doc, Path(path).resolve().parent)


# Sections whose entries are checked one by one when the whole config fails, so that one broken
# entry does not hide the cross-field problems of the others.
SECTIONS: dict[str, type[StrictModel]] = {"sources": SourceConfig}


def validate(doc: YamlDoc, base_dir: Path) -> HubConfig:
    problems = list(doc.problems)
    if doc.data is None and problems:
        raise ConfigError(problems)
    if not isinstance(doc.data, dict):
        raise ConfigError([Problem(doc.file, 1, "", "the config must be a mapping of keys (server, storage, sources, ...)")])
    try:
        config: HubConfig | None = HubConfig.model_validate(doc.data)
    except ValidationError as exc:
        config = None
        problems += _translate(doc, exc)
        problems += _entry_problems(doc)
    else:
        problems += [doc.problem(loc, msg) for loc, msg in config.problems()]
    problems = [p for p in dict.fromkeys(problems) if p in doc.problems or not _hides_unset(doc, p)]
    if problems or config is None:
        raise ConfigError(problems)
    config._file, config._base_dir = doc.file, base_dir
    config._notes = [
        doc.problem(loc, f"{', '.join(names)} is not set: using the default written in the file (fine for a demo, "
                         "not for production)")
        for loc, names in doc.defaulted.items() if _SECRETISH.search(format_path(loc))
    ]
    return config


_SECRETISH = re.compile(r"secret|token|auth|password|key", re.I)


def _entry_problems(doc: YamlDoc) -> list[Problem]:
    out = []
    for section, model in SECTIONS.items():
        entries = doc.data.get(section)
        items = entries.items() if isinstance(entries, dict) else enumerate(entries) if isinstance(entries, list) else []
        for key, raw in items:
            try:
                entry = model.model_validate(raw)
            except ValidationError:
                continue
            out += [doc.problem((section, key, *loc), msg) for loc, msg in entry.problems()]
    return out


def _hides_unset(doc: YamlDoc, problem: Problem) -> bool:
    """A follow-on problem caused by an unset variable (its value became empty) is not worth showing."""
    return any(problem.path == format_path(loc) or format_path(loc).startswith(problem.path + "[")
               or format_path(loc).startswith(problem.path + ".") for loc in doc.unset)


def _translate(doc: YamlDoc, exc: ValidationError) -> list[Problem]:
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc: Loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if "[key]" in loc:
            loc = loc[: loc.index("[key]")]
            msg = "invalid name: use letters, digits, '_', '-' or '.', starting with a letter or digit"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key" + _hint(str(loc[-1]), _allowed_keys(loc[:-1]))
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "literal_error":
            expected = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
            value = _value_at(doc.data, loc)
            msg = f"must be one of {', '.join(expected)}" + (_hint(value, expected) if isinstance(value, str) else "")
        out.append(doc.problem(loc, msg))
    return out


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f'; did you mean "{close[0]}"?' if close else ""


def _value_at(data: Any, loc: Loc) -> Any:
    for key in loc:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _allowed_keys(loc: Loc) -> list[str]:
    """Field names of the model that sits at ``loc`` (for "did you mean" on unknown keys)."""
    current: Any = HubConfig
    for key in loc:
        if _is_model(current) and isinstance(key, str):
            field = current.model_fields.get(key)
            if field is None:
                return []
            args = [a for a in getattr(field.annotation, "__args__", ()) if a is not type(None)]
            current = args[0] if len(args) == 1 and _is_model(args[0]) else field.annotation
        else:
            current = _inner(current)  # a dict key or list index: step into the element model
    return list(current.model_fields) if _is_model(current) else []


def _is_model(x: Any) -> bool:
    return isinstance(x, type) and issubclass(x, BaseModel)


def _inner(annotation: Any) -> Any:
    """The model inside ``list[M]``, ``dict[str, M]`` or ``M | None``."""
    for arg in reversed(getattr(annotation, "__args__", ()) or ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        if (found := _inner(arg)) is not None:
            return found
    return None
