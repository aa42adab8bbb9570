"""PostgreSQL `numeric` as Python `int`, exact at any size, for asyncpg connections.

The read models keep credits, money and quantities in `numeric` columns (sums of many amounts
pass bigint's range). asyncpg's own codec goes through `Decimal` both ways: reading gives
`Decimal` (whose arithmetic rounds to 28 digits by default) and writing an `int` costs ~2 µs,
a quarter of a rebuild's time. This codec reads integral values as `int` (a value with a
fraction as an exact `Decimal`) and writes `int` straight into numeric's binary format: a
sign, a weight and base-10000 digits.
"""

from __future__ import annotations

import struct
from decimal import Decimal
from typing import Any

import asyncpg

_HEADER = struct.Struct(">hhHh")  # ndigits, weight, sign, display scale
_POSITIVE, _NEGATIVE, _NAN, _INFINITY, _MINUS_INFINITY = 0x0000, 0x4000, 0xC000, 0xD000, 0xF000
_BASE = 10_000
# Most values are small (quantities, a lot's amount): their encodings are made once.
_SMALL = [_HEADER.pack(0, 0, _POSITIVE, 0)] + [
    _HEADER.pack(1, 0, _POSITIVE, 0) + struct.pack(">h", n) for n in range(1, _BASE)
]


async def register_numeric_as_int(conn: asyncpg.Connection) -> None:
    """For asyncpg's `init=`: every `numeric` this connection reads or writes goes through here."""
    await conn.set_type_codec(
        "numeric", schema="pg_catalog", encoder=encode, decoder=decode, format="binary"
    )


def encode(value: Any) -> bytes:
    if type(value) is int:
        if 0 <= value < _BASE:
            return _SMALL[value]
        return _encode_int(value)
    if isinstance(value, Decimal):
        return _encode_decimal(value)
    if isinstance(value, int):  # bool, IntEnum
        return encode(int(value))
    raise TypeError(f"numeric columns take int or Decimal, not {type(value).__name__}")


def decode(data: bytes) -> int | Decimal:
    ndigits, weight, sign, scale = _HEADER.unpack_from(data)
    if sign == _NAN:
        return Decimal("NaN")
    if sign in (_INFINITY, _MINUS_INFINITY):
        return Decimal("Infinity" if sign == _INFINITY else "-Infinity")
    value = 0
    for digit in struct.unpack_from(f">{ndigits}h", data, _HEADER.size):
        value = value * _BASE + digit
    # The digits stand for value * BASE ** exponent.
    exponent = weight - ndigits + 1
    negative = sign == _NEGATIVE
    if scale == 0:
        # No fraction digits: the value is an integer (exponent < 0 only with zero digits).
        whole = value * _BASE**exponent if exponent >= 0 else value // _BASE**-exponent
        return -whole if negative else whole
    text = str(value * _BASE**exponent if exponent >= 0 else value)
    places = max(-4 * exponent, 0)
    text = text.rjust(places + 1, "0")
    whole_text, fraction = text[: len(text) - places], text[len(text) - places :]
    fraction = fraction[:scale].ljust(scale, "0")
    return Decimal(f"{'-' if negative else ''}{whole_text}.{fraction}")


def _encode_int(value: int) -> bytes:
    sign = _POSITIVE
    if value < 0:
        sign, value = _NEGATIVE, -value
    digits = []
    while value:
        value, digit = divmod(value, _BASE)
        digits.append(digit)
    weight = len(digits) - 1
    # Trailing zero digits are implied by the weight; PostgreSQL stores none.
    first = 0
    while digits[first] == 0:
        first += 1
    digits = digits[first:][::-1]
    return _HEADER.pack(len(digits), weight, sign, 0) + struct.pack(f">{len(digits)}h", *digits)


def _encode_decimal(value: Decimal) -> bytes:
    if value.is_nan():
        return _HEADER.pack(0, 0, _NAN, 0)
    if value.is_infinite():
        return _HEADER.pack(0, 0, _MINUS_INFINITY if value < 0 else _INFINITY, 0)
    text = format(value, "f")
    sign = _NEGATIVE if text.startswith("-") else _POSITIVE
    whole, _, fraction = text.lstrip("-").partition(".")
    scale = len(fraction)
    whole = whole.lstrip("0")
    whole = "0" * (-len(whole) % 4) + whole
    fraction = fraction + "0" * (-len(fraction) % 4)
    digits = [int(whole[i : i + 4]) for i in range(0, len(whole), 4)]
    digits += [int(fraction[i : i + 4]) for i in range(0, len(fraction), 4)]
    weight = len(whole) // 4 - 1
    while digits and digits[0] == 0:
        digits.pop(0)
        weight -= 1
    while digits and digits[-1] == 0:
        digits.pop()
    if not digits:
        return _HEADER.pack(0, 0, _POSITIVE, scale)
    return _HEADER.pack(len(digits), weight, sign, scale) + struct.pack(f">{len(digits)}h", *digits)
