"""Identity numbers of parties, checked before any agency is asked about them.

Pure functions, no I/O. A wrong digit in an ID number would query (and perhaps freeze) a stranger's
assets, so both kinds of number are refused unless their check character is right:

- GB 11643-1999 公民身份号码: 17 digits (6 address code, 8 birth date, 3 sequence) and a check
  character computed with ISO 7064 MOD 11-2 (weights 2^(17-i) mod 11; ``X`` stands for 10).
- GB 32100-2015 统一社会信用代码: 18 characters from the 31-character alphabet without I, O, Z, S, V;
  the last is the check character, ``31 - (Σ value·weight mod 31)`` with weights 3^(i-1) mod 31.
"""

from __future__ import annotations

from datetime import date

ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
ID_CHECK = "10X98765432"  # check character for (Σ mod 11) = 0, 1, 2, …

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28
_USCC_VALUE = {ch: i for i, ch in enumerate(USCC_ALPHABET)}


class InvalidIdentifier(ValueError):
    """A party's ID number or credit code is malformed; the message says exactly what is wrong."""


def id_check_char(first17: str) -> str:
    """The GB 11643 check character of the first 17 digits."""
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def validate_id_number(raw: str, *, today: date | None = None) -> str:
    """Return the canonical (upper-case ``X``) 18-character resident ID number, or raise ``InvalidIdentifier``."""
    value = raw.strip().upper()
    if len(value) != 18:
        raise InvalidIdentifier(f"resident ID number must have 18 characters, got {len(value)}")
    body, check = value[:17], value[17]
    for position, ch in enumerate(body, start=1):
        if not ("0" <= ch <= "9"):
            raise InvalidIdentifier(f"resident ID number: character {position} must be a digit, got {ch!r}")
    if check not in "0123456789X":
        raise InvalidIdentifier(f"resident ID number: character 18 must be a digit or X, got {check!r}")
    if body[0] == "0":
        raise InvalidIdentifier("resident ID number: address code cannot start with 0")
    try:
        born = date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        raise InvalidIdentifier(f"resident ID number: birth date {body[6:14]} is not a calendar date") from None
    if born.year < 1800 or born > (today or date.today()):
        raise InvalidIdentifier(f"resident ID number: birth date {born.isoformat()} is out of range")
    expected = id_check_char(body)
    if check != expected:
        raise InvalidIdentifier(f"resident ID number: check digit is {check}, expected {expected} (GB 11643)")
    return value


def uscc_check_char(first17: str) -> str:
    """The GB 32100 check character of the first 17 characters (which must be in the alphabet)."""
    total = sum(_USCC_VALUE[ch] * w for ch, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def validate_credit_code(raw: str) -> str:
    """Return the canonical (upper-case) unified social credit code, or raise ``InvalidIdentifier``."""
    value = raw.strip().upper()
    if len(value) != 18:
        raise InvalidIdentifier(f"unified social credit code must have 18 characters, got {len(value)}")
    for position, ch in enumerate(value, start=1):
        if ch not in _USCC_VALUE:
            raise InvalidIdentifier(
                f"unified social credit code: character {position} {ch!r} is not allowed "
                "(digits and capital letters except I, O, Z, S, V)"
            )
    expected = uscc_check_char(value[:17])
    if value[17] != expected:
        raise InvalidIdentifier(
            f"unified social credit code: check character is {value[17]}, expected {expected} (GB 32100)"
        )
    return value


def make_id_number(address: str, born: date, sequence: int) -> str:
    """Build a valid ID number (tests, simulator data): 6-digit address code, birth date, 3-digit sequence."""
    body = f"{address}{born:%Y%m%d}{sequence:03d}"
    if len(body) != 17 or not body.isdigit():
        raise ValueError("address must be 6 digits and sequence 0…999")
    return body + id_check_char(body)


def make_credit_code(first17: str) -> str:
    """Complete 17 characters of the GB 32100 alphabet into a valid credit code."""
    value = first17.upper()
    if len(value) != 17 or any(ch not in _USCC_VALUE for ch in value):
        raise ValueError("need 17 characters of the GB 32100 alphabet")
    return value + uscc_check_char(value)
