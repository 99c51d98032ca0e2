"""A reader and checker for posd's udev rules files, independent of udevadm.

`parse_rules` follows the grammar of systemd's own parser (src/udev/udev-rules.c: keys,
`{attr}`, the six operators, quoted values with the `e`/`i` prefixes, and the style udevadm
verify enforces: one comma and a space between tokens); a key with an operator udev would
refuse or only warn about is an error here. `claim_problems` then holds the rules to posd's
policy: a device is claimed by model (vendor AND product id), never by vendor alone and never by
a bare USB-serial bridge chip id without its serial number, product string, interface string or
USB port; only claimed devices get the posd names.

Written for the test of systemd/99-posd.rules and 98-posd-local.rules; `check_local_line` holds
a line `posd devices` prints to the exact forms (`LOCAL_LINE`, defined once, in the shipped
posd.cli.udev_local) and to the policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import product

from posd.cli.udev_local import LOCAL_LINE

__all__ = [
    "BRIDGE_CHIPS",
    "LOCAL_LINE",
    "POSD_ROLES",
    "Rule",
    "RulesError",
    "Token",
    "check_local_line",
    "claim_problems",
    "parse_rules",
]

# Generic USB-serial (and USB-UART) bridge chips under their makers' default ids (usb.ids, Linux
# drivers/usb/serial/*): thousands of unrelated products carry them.
BRIDGE_CHIPS: frozenset[tuple[str, str]] = frozenset(
    [("0403", p) for p in ("6001", "6010", "6011", "6014", "6015")]  # FTDI FT232R/2232/4232/232H/X
    + [("10c4", p) for p in ("ea60", "ea61", "ea63", "ea70", "ea71")]  # Silicon Labs CP210x
    + [("1a86", p) for p in ("7522", "7523", "5523", "55d4")]  # WCH CH340, CH341, CH9102
    + [("067b", p) for p in ("2303", "23a3", "aaa3")]  # Prolific PL2303
)
# The product strings those chips report out of the box: a match on one is no qualifier at all.
_DEFAULT_PRODUCT_STRINGS = frozenset(
    {
        "FT232R USB UART",
        "FT230X Basic UART",
        "FT231X USB UART",
        "USB Serial",
        "USB <-> Serial",
        "USB-Serial Controller",
        "USB-Serial Controller D",
        "CP2102 USB to UART Bridge Controller",
        "CP2104 USB to UART Bridge Controller",
        "CP2102N USB to UART Bridge Controller",
    }
)

_MATCH = frozenset({"==", "!="})
_ALL_OPS = frozenset({"==", "!=", "=", "+=", "-=", ":="})
# key -> (attribute: "no", "yes" or the allowed set; allowed operators), per udev-rules.c, with
# the operators udev only warns about ("assuming '='") left out.
_KEYS: dict[str, tuple[str | frozenset[str], frozenset[str]]] = {
    **{k: ("no", _MATCH) for k in ("ACTION", "DEVPATH", "KERNEL", "SUBSYSTEM", "DRIVER")},
    **{k: ("no", _MATCH) for k in ("KERNELS", "SUBSYSTEMS", "DRIVERS", "TAGS", "RESULT")},
    "ATTRS": ("yes", _MATCH),
    "CONST": (frozenset({"arch", "virt"}), _MATCH),
    "SYMLINK": ("no", _ALL_OPS),
    "NAME": ("no", frozenset({"==", "!=", "=", ":="})),
    "ENV": ("yes", frozenset({"==", "!=", "=", "+="})),
    "TAG": ("no", frozenset({"==", "!=", "=", "+=", "-="})),
    "ATTR": ("yes", frozenset({"==", "!=", "="})),
    "SYSCTL": ("yes", frozenset({"==", "!=", "="})),
    "IMPORT": (
        frozenset({"program", "builtin", "file", "db", "cmdline", "parent"}),
        _MATCH | {"="},
    ),
    "PROGRAM": ("no", _MATCH | {"="}),
    "OPTIONS": ("no", frozenset({"=", "+=", ":="})),
    "OWNER": ("no", frozenset({"=", ":="})),
    "GROUP": ("no", frozenset({"=", ":="})),
    "MODE": ("no", frozenset({"=", ":="})),
    "RUN": (frozenset({"program", "builtin"}), frozenset({"=", "+=", ":="})),
    "GOTO": ("no", frozenset({"="})),
    "LABEL": ("no", frozenset({"="})),
}
_OPTIONAL_ATTR = frozenset({"RUN", "TEST"})
_UNSETTABLE_ENV = frozenset(
    {"ACTION", "DEVLINKS", "DEVNAME", "DEVPATH", "DEVTYPE", "DRIVER", "IFINDEX", "MAJOR"}
    | {"MINOR", "SEQNUM", "SUBSYSTEM", "TAGS", "CURRENT_TAGS"}
)
_OPTIONS = re.compile(
    r"dump|string_escape=(none|replace)|db_persist|watch|nowatch|static_node=\S+"
    r"|link_priority=-?\d+|log_level=\w+"
)
_TOKEN = re.compile(
    r"(?P<key>[A-Z_]+)(\{(?P<attr>[^}]*)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"
    r"(?P<prefix>[ei]{0,2})\"(?P<value>(\\.|[^\"\\])*)\""
)
_SEPARATOR = re.compile(r", (?=\S)")

# Where a USB attribute lives in sysfs: udev matches all ATTRS{} of a rule on ONE parent.
_USB_DEVICE_ATTRS = frozenset({"idVendor", "idProduct", "serial", "product", "manufacturer"})
_USB_INTERFACE_ATTRS = frozenset({"interface", "bInterfaceNumber", "bInterfaceClass"})
_VENDOR = frozenset({("ATTRS", "idVendor"), ("ATTR", "idVendor"), ("ENV", "ID_VENDOR_ID")})
_PRODUCT = frozenset({("ATTRS", "idProduct"), ("ATTR", "idProduct"), ("ENV", "ID_MODEL_ID")})
_SERIAL_KEYS = frozenset({("ATTRS", "serial"), ("ATTR", "serial"), ("ENV", "ID_SERIAL_SHORT")})
_PRODUCT_STRING_KEYS = frozenset({("ATTRS", "product"), ("ATTR", "product")})
_GLOB = re.compile(r"[*?\[\]]")
POSD_ROLES = frozenset({"reader", "scanner"})


class RulesError(ValueError):
    """A line udev would refuse, warn about, or (for posd's policy) must not have."""


@dataclass(frozen=True, slots=True)
class Token:
    key: str
    attr: str | None
    op: str
    value: str

    def is_(self, key: str, attr: str | None = None, op: str | None = None) -> bool:
        return self.key == key and self.attr == attr and (op is None or self.op == op)


@dataclass(frozen=True, slots=True)
class Rule:
    where: str  # FILE:LINE
    tokens: tuple[Token, ...]

    def find(self, pairs: frozenset[tuple[str, str]]) -> list[Token]:
        return [t for t in self.tokens if (t.key, t.attr or "") in pairs]


def parse_rules(text: str, name: str) -> list[Rule]:
    """Every rule line of a rules file; RulesError naming FILE:LINE for the first bad one."""
    rules: list[Rule] = []
    labels: set[str] = set()
    gotos: list[tuple[str, str]] = []
    lines = text.split("\n")
    number = 0
    while number < len(lines):
        start = number
        line = lines[number].strip()
        while line.endswith("\\") and number + 1 < len(lines):
            number += 1
            line = line[:-1] + lines[number].strip()
        number += 1
        if not line or line.startswith("#"):
            continue
        where = f"{name}:{start + 1}"
        rule = Rule(where, _parse_line(line, where))
        for token in rule.tokens:
            if token.key == "LABEL":
                labels.add(token.value)
            elif token.key == "GOTO":
                gotos.append((where, token.value))
        rules.append(rule)
    for where, label in gotos:
        if label not in labels:
            raise RulesError(f'{where}: GOTO="{label}" has no LABEL="{label}" in this file')
    return rules


def _parse_line(line: str, where: str) -> tuple[Token, ...]:
    tokens: list[Token] = []
    pos = 0
    while True:
        m = _TOKEN.match(line, pos)
        if m is None:
            raise RulesError(f'{where}: cannot read a KEY op "value" token at: {line[pos:]!r}')
        tokens.append(_check_token(m, where))
        pos = m.end()
        if pos == len(line):
            return tuple(tokens)
        sep = _SEPARATOR.match(line, pos)
        if sep is None:
            raise RulesError(f"{where}: tokens must be separated by one comma and a space")
        pos = sep.end()


def _check_token(m: re.Match[str], where: str) -> Token:
    key, attr, op, prefix = m["key"], m["attr"], m["op"], m["prefix"]
    value = m["value"].replace('\\"', '"')
    if key not in _KEYS and key != "TEST":
        raise RulesError(f"{where}: unknown key {key}")
    if len(set(prefix)) != len(prefix):
        raise RulesError(f"{where}: {key}: repeated value prefix {prefix!r}")
    wanted, ops = _KEYS.get(key, ("no", _MATCH))
    if key == "TEST":
        if attr is not None and not re.fullmatch(r"[0-7]{3,4}", attr):
            raise RulesError(f"{where}: TEST{{{attr}}}: the attribute is an octal mode")
    elif wanted == "no" and attr is not None:
        raise RulesError(f"{where}: {key} takes no {{attribute}}")
    elif wanted == "yes" and not attr:
        raise RulesError(f"{where}: {key} needs an {{attribute}}")
    elif isinstance(wanted, frozenset) and attr is not None and attr not in wanted:
        raise RulesError(f"{where}: {key}{{{attr}}}: expected one of {sorted(wanted)}")
    elif isinstance(wanted, frozenset) and attr is None and key not in _OPTIONAL_ATTR:
        raise RulesError(f"{where}: {key} needs an {{attribute}}")
    if op not in ops:
        raise RulesError(f"{where}: {key} does not take the operator {op}")
    if "i" in prefix and op not in _MATCH:
        raise RulesError(f"{where}: {key}: the i prefix is for matches only")
    if key == "ENV" and op not in _MATCH and attr in _UNSETTABLE_ENV:
        raise RulesError(f"{where}: ENV{{{attr}}} cannot be set")
    if key == "MODE" and not re.fullmatch(r"0?[0-7]{3}|\$.*|%.*", value):
        raise RulesError(f'{where}: MODE="{value}" is not an octal mode')
    if key == "OPTIONS" and not all(_OPTIONS.fullmatch(v) for v in value.split(",")):
        raise RulesError(f'{where}: OPTIONS="{value}" holds an option udev does not know')
    return Token(key, attr, op, value)


def claim_problems(rules: list[Rule]) -> list[str]:
    """posd's policy, one message per breach: claims by model only, names for claims only."""
    problems: list[str] = []
    for rule in rules:
        problems += [f"{rule.where}: {p}" for p in _rule_problems(rule)]
    return problems


def _rule_problems(rule: Rule) -> list[str]:
    problems: list[str] = []
    vendors, products = rule.find(_VENDOR), rule.find(_PRODUCT)
    if vendors or products:
        problems += _id_problems(rule, vendors, products)
    attrs = {t.attr for t in rule.tokens if t.key == "ATTRS" and t.attr}
    if attrs & _USB_DEVICE_ATTRS and attrs & _USB_INTERFACE_ATTRS:
        problems.append(
            f"ATTRS{{{sorted(attrs & _USB_INTERFACE_ATTRS)[0]}}} is an attribute of the USB "
            f"interface and ATTRS{{{sorted(attrs & _USB_DEVICE_ATTRS)[0]}}} one of the USB "
            "device; udev matches all ATTRS of a rule on one parent, so this never matches "
            "(match the ids as ENV{ID_VENDOR_ID}/ENV{ID_MODEL_ID})"
        )
    claims = [t for t in rule.tokens if t.is_("ENV", "POSD_DEVICE", "=")]
    names = [t for t in rule.tokens if t.is_("SYMLINK") and t.value.startswith("posd-")]
    if claims and not (vendors and products):
        problems.append("claims a device (ENV{POSD_DEVICE}=) without its vendor and product id")
    for claim in claims:
        if claim.value not in POSD_ROLES:
            problems.append(f'ENV{{POSD_DEVICE}}="{claim.value}": expected reader or scanner')
        subsystems = [t.value for t in rule.tokens if t.is_("SUBSYSTEM", op="==")]
        allowed = [["tty"]] if claim.value == "reader" else [["tty"], ["usb|hidraw"]]
        if subsystems not in allowed:
            problems.append(
                f'a {claim.value} is claimed with SUBSYSTEM=="tty"'
                + ("" if claim.value == "reader" else ' or SUBSYSTEM=="usb|hidraw"')
            )
    if names:
        role = [t.value for t in rule.tokens if t.is_("ENV", "POSD_DEVICE", "==")]
        if not role or role[0] not in POSD_ROLES or claims:
            problems.append(
                'SYMLINK+="posd-..." only on a line matching ENV{POSD_DEVICE}=="reader" or '
                '"scanner" (so only claimed devices get the names)'
            )
        elif any(n.value != f"posd-{role[0]}" for n in names):
            problems.append(f"a {role[0]} is named /dev/posd-{role[0]}")
    return problems


def _id_problems(rule: Rule, vendors: list[Token], products: list[Token]) -> list[str]:
    if not vendors:
        return ["matches a product id without its vendor id"]
    if not products:
        return [f"vendor-only match ({vendors[0].value}): name the product id too"]
    if len(vendors) > 1 or len(products) > 1:
        return ["more than one vendor or product id match in one rule"]
    vendor, prod = vendors[0], products[0]
    problems: list[str] = []
    for token in (vendor, prod):
        if token.op != "==":
            problems.append(f"{token.key}{{{token.attr}}}{token.op}: ids are matched with ==")
        if not all(re.fullmatch(r"[0-9a-f]{4}", v) for v in token.value.split("|")):
            problems.append(
                f'{token.key}{{{token.attr}}}=="{token.value}": ids are 4 lower-case hex '
                "digits (alternatives with |), no patterns"
            )
    if problems:
        return problems
    bare = sorted(set(product(vendor.value.split("|"), prod.value.split("|"))) & BRIDGE_CHIPS)
    if bare and not _qualified(rule):
        chips = ", ".join(f"{v}:{p}" for v, p in bare)
        problems.append(
            f"bare USB-serial bridge chip id {chips}: add the device's ATTRS{{serial}}, its "
            "own ATTRS{product} string, an interface string or its ENV{ID_PATH}"
        )
    return problems


def _qualified(rule: Rule) -> bool:
    """A match that singles out one device behind a generic chip."""
    for token in rule.tokens:
        if token.op != "==" or not token.value or _GLOB.search(token.value) or "|" in token.value:
            continue
        pair = (token.key, token.attr or "")
        if pair in _SERIAL_KEYS and re.fullmatch(r"[A-Za-z0-9._:-]+", token.value):
            return True
        if pair in _PRODUCT_STRING_KEYS and token.value not in _DEFAULT_PRODUCT_STRINGS:
            return True
        if token.is_("ATTRS", "interface") or token.is_("ENV", "ID_PATH"):
            return True
    return False


def check_local_line(line: str) -> list[str]:
    """Problems with one line meant for 98-posd-local.rules: its exact format, then the policy."""
    if not LOCAL_LINE.fullmatch(line):
        return [f"not one of the forms documented in 98-posd-local.rules: {line}"]
    try:
        rules = parse_rules(line, "98-posd-local.rules")
    except RulesError as e:
        return [str(e)]
    return claim_problems(rules)
