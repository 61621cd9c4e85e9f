"""Typed values: checking, decoding and describing values by the functions' type hints.

Stored values stay JSON. Values of the supported types (dataclasses, attrs
classes, TypedDicts, datetimes, UUIDs, Decimals, enums, tuples, sets, pydantic
models, ...) are encoded into their JSON form where they enter (`to_json_native`
is the encoder `_serde` falls back on) and decoded into the annotated type where
code reads them, by msgspec (`convert`, `to_builtins`, JSON Schema): the
converter was chosen by measurement (`benchmarks/converters.py`). Pydantic
models go through their own `model_dump`/`model_validate` in msgspec's hooks.

Each registered function gets a `Signature` once, from its hints: a codec per
parameter and one for the result. A JSON-native annotation (or none, or `Any`)
has no decoder at all, so plain functions pay nothing where values are read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import functools
import inspect
import sys
import types
import typing
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import attrs
import msgspec

from ._errors import ValidationError

DEFS_TEMPLATE = "#/$defs/{name}"
"""Where schemas refer to the types they use unless told otherwise: their own `$defs`."""

_NATIVE: frozenset[Any] = frozenset(
    {Any, object, str, int, float, bool, None, type(None), list, dict}
)
# What orjson cannot encode itself but msgspec can (attrs classes and pydantic models
# are told apart by their class).
_ENCODED_BY_MSGSPEC = (decimal.Decimal, set, frozenset, timedelta)


def is_json_native(annotation: Any) -> bool:
    """Whether values of `annotation` are read back from JSON as they are (no decoding)."""
    try:
        if annotation in _NATIVE:
            return True
    except TypeError:  # unhashable (e.g. a parametrized Annotated with a list inside)
        return False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list:
        return all(is_json_native(a) for a in args)
    if origin is dict:
        return len(args) == 2 and args[0] is str and is_json_native(args[1])
    if _is_union(annotation):
        return all(is_json_native(a) for a in args)
    if origin is typing.Literal:
        return all(a is None or type(a) in (str, int, bool) for a in args)
    return False


_SCALARS: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (float, int),
    str: (str,),
    bool: (bool,),
    None: (type(None),),
    type(None): (type(None),),
    list: (list,),
    dict: (dict,),
}


def _exact_types(annotation: Any) -> frozenset[type]:
    """The types whose every value fits `annotation` (the JSON scalars, bare `list` and
    `dict`, and unions of these); empty for anything else."""
    options = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    found: set[type] = set()
    for option in options:
        with contextlib.suppress(TypeError):  # unhashable: not a scalar
            found.update(_SCALARS.get(option, ()))
    return frozenset(found)


def _is_union(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin is typing.Union or origin is types.UnionType


def _pydantic_model() -> type[Any] | None:
    """pydantic's BaseModel if pydantic is imported (it is not a dependency)."""
    module = sys.modules.get("pydantic")
    return None if module is None else getattr(module, "BaseModel", None)


def _is_pydantic_class(tp: Any) -> bool:
    base = _pydantic_model()
    return base is not None and isinstance(tp, type) and issubclass(tp, base)


def _enc_hook(value: Any) -> Any:
    if _is_pydantic_class(type(value)):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} values cannot be serialized to JSON")


def _dec_hook(tp: Any, data: Any) -> Any:
    if _is_pydantic_class(tp):
        return tp.model_validate(data)
    raise TypeError(f"actorflow cannot decode values of type {_type_name(tp)}")


def to_json_native(value: Any) -> Any:
    """The JSON form of a value of a supported type that orjson does not encode itself
    (orjson's `default`); raises `TypeError` for anything else."""
    if isinstance(value, _ENCODED_BY_MSGSPEC) or attrs.has(type(value)):
        return _builtins(value)
    return _enc_hook(value)


def _builtins(value: Any, str_keys: bool = False) -> Any:
    """`value` in JSON-native form, for checking it (as it would be stored); with
    `str_keys`, every dict key a string. bytes stay bytes (and are refused where
    stored): they are not among the supported types."""
    return msgspec.to_builtins(
        value, enc_hook=_enc_hook, builtin_types=(bytes, bytearray), str_keys=str_keys
    )


class TypeCodec:
    """Checks values against one annotation and decodes their JSON form into it."""

    __slots__ = ("annotation", "exact", "native", "opaque")

    def __init__(self, annotation: Any) -> None:
        self.annotation = annotation
        self.native = is_json_native(annotation)
        # Accepts any JSON value: nothing to check.
        self.opaque = self.native and annotation in (Any, object)
        # Types whose values fit with no further check (`int` for `int | None`): a start's
        # arguments are usually of these, and msgspec's check costs ~3,000 instructions.
        self.exact = _exact_types(annotation)

    def decode(self, data: Any) -> Any:
        """The JSON-native `data` as a value of the annotation; raises `msgspec.ValidationError`."""
        return msgspec.convert(data, self.annotation, dec_hook=_dec_hook, str_keys=True)

    def with_text_keys(self, value: Any) -> Any | None:
        """`value`'s JSON form with every dict key a string, JSON's only kind of key, if
        decoding it by the annotation gives `value` back; else None.

        orjson refuses a `dict[UUID, int]` (its keys are not strings); stored as
        `{"<uuid>": 1}` it comes back as it was, because the annotation names the
        keys' type. Keys the annotation does not type (`dict`, `dict[Any, int]`)
        would come back as strings: those values are refused, as before."""
        if self.native:
            return None
        try:
            form = _builtins(value, str_keys=True)
            same = self.decode(form) == value
        except (TypeError, ValueError, msgspec.ValidationError):
            return None
        return form if same else None

    def check(self, value: Any) -> str | None:
        """Why `value` (typed, or in JSON form) does not fit the annotation, or None if it
        does. A value that cannot be encoded at all passes: encoding it reports that."""
        if self.opaque:
            return None
        try:
            if self.native:  # usually JSON already: checked as it is, first
                try:
                    msgspec.convert(value, self.annotation)
                    return None
                except msgspec.ValidationError:
                    pass  # a dataclass for a `dict`, say: checked in its JSON form below
            msgspec.convert(_builtins(value), self.annotation, dec_hook=_dec_hook)
        except msgspec.ValidationError as exc:
            return str(exc)
        except TypeError:
            return None
        return None


@functools.lru_cache(maxsize=1024)
def _cached_codec(annotation: Any) -> TypeCodec:
    return TypeCodec(annotation)


def codec_for(annotation: Any) -> TypeCodec:
    """The codec of `annotation`, shared by every use of the same (hashable) annotation."""
    try:
        return _cached_codec(annotation)
    except TypeError:
        return TypeCodec(annotation)


def unfit(what: str, annotation: Any, problem: str, argument: str | None) -> ValidationError:
    """The error for `what` not fitting `annotation`, from msgspec's `problem`."""
    reason, path = split_error(problem)
    return ValidationError(
        f"{what} does not fit its annotation {_type_name(annotation)}"
        f"{' at ' + path if path else ''}: {reason}",
        argument=argument,
        path=path,
        reason=reason,
    )


def split_error(message: str) -> tuple[str, str]:
    """msgspec's "Expected `int`, got `str` - at `$.items[0]`" as its reason and the path
    after `$` ("" at the top); pydantic's multi-line messages are joined into one line."""
    reason, sep, where = message.rpartition(" - at `$")
    if not sep:
        reason, where = message, ""
    return " ".join(reason.split()), where.rstrip("`")


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


@dataclasses.dataclass(frozen=True)
class WorkflowSchemas:
    """The JSON Schemas of a workflow (`af.workflow_schemas`).

    `args` describes the positional arguments a run is started with (a JSON
    array, as in the HTTP API's `{"args": [...]}`), each item titled with its
    parameter's name; `result` describes what the run returns. Types they
    refer to are under each schema's `$defs` and in `defs`.
    """

    args: dict[str, Any]
    result: dict[str, Any]
    defs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The schemas of the types `args` and `result` refer to, by name (under their
    `$defs` too, unless another `ref_template` was asked for)."""


class Signature:
    """A function's typed parameters (positional, as runs get them) and result."""

    def __init__(self, fn: Callable[..., Any], what: str) -> None:
        self.what = what
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as exc:
            raise TypeError(
                f"cannot resolve the type hints of {what} ({type(exc).__name__}: {exc}); "
                "types in annotations must be importable from the function's module"
            ) from None
        self.names: list[str] = []
        self.params: list[TypeCodec] = []
        self.variadic: tuple[str, TypeCodec] | None = None
        self.required = 0
        self.defaults: dict[str, Any] = {}  # JSON forms, for the schemas
        for param in inspect.signature(fn).parameters.values():
            codec = codec_for(hints.get(param.name, Any))
            if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                self.names.append(param.name)
                self.params.append(codec)
                if param.default is param.empty:
                    self.required = len(self.params)
                else:
                    with contextlib.suppress(TypeError):  # not storable: no default shown
                        self.defaults[param.name] = _builtins(param.default)
            elif param.kind is param.VAR_POSITIONAL:
                self.variadic = (param.name, codec)
        self.result = codec_for(hints.get("return", Any))
        codecs = [*self.params, *([self.variadic[1]] if self.variadic else [])]
        self.rest = self.variadic[1] if self.variadic else codec_for(Any)
        # Plain attributes, not properties: read on every start and every run's start.
        self.args_native = all(c.native for c in codecs)
        self.args_checked = not all(c.opaque for c in codecs)

    def _codec(self, i: int) -> tuple[str, TypeCodec]:
        if i < len(self.params):
            return self.names[i], self.params[i]
        assert self.variadic is not None
        name, codec = self.variadic
        return f"{name}[{i - len(self.params)}]", codec

    def check_args(self, args: Sequence[Any], where: str = "") -> None:
        """Raise `ValidationError` naming the first argument that does not fit its
        annotation, the path inside it and what was expected."""
        if not self.args_checked:
            return
        params, rest = self.params, self.rest
        for i, value in enumerate(args):
            codec = params[i] if i < len(params) else rest
            if codec.opaque or type(value) in codec.exact:
                continue
            problem = codec.check(value)
            if problem is not None:
                name = self._codec(i)[0]
                what = f"{where}{self.what}: argument {name!r}"
                raise unfit(what, codec.annotation, problem, name)

    def with_text_keys(self, args: Sequence[Any]) -> list[Any]:
        """`args` with each typed argument that holds dicts with keys other than strings
        in its JSON form (see `TypeCodec.with_text_keys`); the others as they are."""
        params, rest = self.params, self.rest
        forms = []
        for i, value in enumerate(args):
            form = (params[i] if i < len(params) else rest).with_text_keys(value)
            forms.append(value if form is None else form)
        return forms

    def decode_args(self, args: list[Any]) -> list[Any]:
        """Stored arguments as their annotated types; raises `ValidationError` for one that
        no longer fits (the annotation changed since the run was started)."""
        if self.args_native:
            return args
        decoded = []
        for i, value in enumerate(args):
            name, codec = self._codec(i)
            if codec.native:
                decoded.append(value)
                continue
            try:
                decoded.append(codec.decode(value))
            except msgspec.ValidationError as exc:
                what = f"the stored argument {name!r} of {self.what}"
                raise unfit(what, codec.annotation, str(exc), name) from None
        return decoded

    def result_decoder(self, *, from_json: bool = False) -> Callable[[Any], Any] | None:
        """The decoder of the result (of its stored JSON, `from_json`), or None when it is
        read as stored."""
        if self.result.native:
            return None
        return value_decoder(self.result, f"the result of {self.what}", from_json=from_json)

    def schemas(self, ref_template: str = DEFS_TEMPLATE) -> WorkflowSchemas:
        """The JSON Schemas of the arguments (an array, positional) and of the result,
        referring to the types they use by `ref_template`; under `$defs` only with the
        default `"#/$defs/{name}"`."""
        codecs = [*self.params, *([self.variadic[1]] if self.variadic else [])]
        found, defs = json_schemas([c.annotation for c in [*codecs, self.result]], ref_template)
        items = []
        for name, schema in zip(self.names, found, strict=False):
            item = {**schema, "title": name} if "title" not in schema else dict(schema)
            if name in self.defaults:
                item["default"] = self.defaults[name]
            items.append(item)
        args: dict[str, Any] = {"type": "array", "prefixItems": items, "minItems": self.required}
        if self.variadic is None:
            args["maxItems"] = len(items)
            args["items"] = False
        else:
            args["items"] = found[len(self.params)]
        result = found[-1]
        if defs and ref_template == DEFS_TEMPLATE:
            args["$defs"] = defs
            result = {**result, "$defs": defs}
        return WorkflowSchemas(args, result, defs)


def value_decoder(codec: TypeCodec, what: str, *, from_json: bool = False) -> Callable[[Any], Any]:
    """A decoder of JSON-native data (or, `from_json`, of JSON bytes: one pass, cheaper
    than parsing then converting) into `codec`'s annotation, raising `ValidationError`
    naming `what` for data that does not fit."""
    annotation = codec.annotation
    if from_json:
        convert: Callable[[Any], Any] = msgspec.json.Decoder(annotation, dec_hook=_dec_hook).decode
    else:
        convert = functools.partial(
            msgspec.convert, type=annotation, dec_hook=_dec_hook, str_keys=True
        )

    def decode(data: Any) -> Any:
        try:
            return convert(data)
        except msgspec.ValidationError as exc:
            raise unfit(what, annotation, str(exc), None) from None

    return decode


def json_schemas(
    annotations: list[Any], ref_template: str = DEFS_TEMPLATE
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """JSON Schemas of `annotations` and the schemas of the types they refer to (by
    `ref_template`, where `{name}` is the type's name), shared."""
    extra: dict[str, Any] = {}

    def schema_hook(tp: Any) -> dict[str, Any]:
        if _is_pydantic_class(tp):
            model = ref_template.replace("{name}", "{model}")
            schema = dict(tp.model_json_schema(ref_template=model))
            extra.update(schema.pop("$defs", {}))
            extra[tp.__name__] = schema
            return {"$ref": ref_template.format(name=tp.__name__)}
        raise NotImplementedError

    found, defs = msgspec.json.schema_components(
        annotations, schema_hook=schema_hook, ref_template=ref_template
    )
    return list(found), {**extra, **defs}


def json_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of one annotation."""
    (found,), defs = json_schemas([annotation])
    return {**found, "$defs": defs} if defs else found
