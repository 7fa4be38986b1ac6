"""Domain and daemon commands: domain-path, introduce, release, features,
quota, control."""

from typing import Any, Dict, List

from ._output import emit, emit_json, text
from ._parse import UsageError
from ._session import Session
from ._spec import uint32

__all__ = ["cmd_domain_path", "cmd_introduce", "cmd_release",
           "cmd_features", "cmd_quota", "cmd_control", "parse_features"]

Args = Dict[str, Any]


def _number(args: Args, key: str, command: str) -> int:
    """A positional as a 32-bit unsigned number (usage error if not)."""
    try:
        number = uint32(args[key])
    except ValueError as exc:
        raise UsageError("%s: %s" % (key.upper(), exc), command) from None
    return number


def _with_client(args: Args, work: Any) -> Any:
    client = Session(args).client
    try:
        return work(client)
    finally:
        client.close()


def cmd_domain_path(args: Args) -> int:
    """Prints a domain's home path."""
    domid = _number(args, "domid", "domain-path")
    path = text(_with_client(args, lambda c: c.get_domain_path(domid)))
    if args["json"]:
        emit_json({"domid": domid, "path": path})
    else:
        emit(path)
    return 0


def cmd_introduce(args: Args) -> int:
    """Introduces a domain to the daemon."""
    numbers = [_number(args, key, "introduce")
               for key in ("domid", "mfn", "evtchn")]
    _with_client(args, lambda c: c.introduce_domain(*numbers))
    return 0


def cmd_release(args: Args) -> int:
    """Makes the daemon forget a domain."""
    domid = _number(args, "domid", "release")
    _with_client(args, lambda c: c.release_domain(domid))
    return 0


def parse_features(value: str) -> int:
    """``12``, ``0xc`` or ``watchdepth,domid_any`` as feature bits."""
    from .._features import Feature
    try:
        return int(value, 0)
    except ValueError:
        pass
    bits = 0
    for name in filter(None, value.split(",")):
        try:
            bits |= Feature[name.strip().upper()]
        except KeyError:
            raise UsageError("unknown feature %r; known: %s" % (
                name, ", ".join(f.name.lower() for f in Feature
                                if f.name)), "features") from None
    return bits


def _feature_names(bits: int) -> List[str]:
    from .._features import Feature
    names = [f.name.lower() for f in Feature if f.name and bits & f]
    unknown = bits & ~sum(Feature)
    if unknown:
        names.append("0x%x" % unknown)
    return names


def cmd_features(args: Args) -> int:
    """Prints the feature bits (of a domain); with FEATURES sets them."""
    domid = None if args["domid"] is None else \
        _number(args, "domid", "features")
    if args["features"] is not None:
        assert domid is not None
        bits = parse_features(args["features"])
        _with_client(args, lambda c: c.set_features(domid, bits))
        return 0
    value = int(_with_client(args, lambda c: c.get_features(domid)))
    names = _feature_names(value)
    if args["json"]:
        emit_json({"features": value, "names": names})
    else:
        emit(" ".join([str(value)] + names))
    return 0


def cmd_quota(args: Args) -> int:
    """Prints the quotas (of a domain), one of them, or sets one."""
    domid, name = args["domid"], args["name"]
    if args["value"] is not None:
        value = _number(args, "value", "quota")
        _with_client(args, lambda c: c.set_quota(name, value, domid))
        return 0

    def read(client: Any) -> Dict[str, int]:
        names = [name] if name is not None else client.quota_names()
        return {each: client.get_quota(each, domid) for each in names}

    quotas = _with_client(args, read)
    if args["json"]:
        emit_json(quotas)
    elif name is not None:
        emit(str(quotas[name]))
    else:
        for each, value in quotas.items():
            emit("%s %d" % (each, value))
    return 0


def cmd_control(args: Args) -> int:
    """Sends a CONTROL command and prints the reply."""
    words = args["words"]
    reply = _with_client(args, lambda c: c.control(*words))
    if args["json"]:
        from ._output import json_value
        emit_json(json_value(reply))
    elif reply:
        import sys
        sys.stdout.flush()
        sys.stdout.buffer.write(reply + b"\n")  # as xenstore-control
        sys.stdout.buffer.flush()
    return 0
