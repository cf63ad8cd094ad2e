"""Redaction of credentials and PII for text synthobs stores or exports (pure functions).

``redact`` replaces, with ``[REDACTED]``:

- credentials: the value of a secret-looking key (``password``, ``token``,
  ``api_key``, ``client_secret``, ``AccountKey``, ``passwort``, ``contraseña``,
  ``пароль``, ``密码``... in ``k=v``, ``k: v``, ``k%3Dv``, ``k -> v``, ``k is v``,
  YAML (block scalars and values on the next, indented lines too), JSON and
  quoted forms: quoted values with spaces, escapes or newlines, typographic
  quotes, an unterminated quote (to the end of the line), JSON arrays and objects,
  Python tuples ``('password', 'x')``; ``;``-separated connection strings up to
  the ``;``), URL user info (up to the last ``@`` before the host), ``curl -u``,
  ``Authorization`` headers (Digest: the whole value) and bare ``Bearer`` tokens, JWTs, PEM private key
  blocks (to the end of the text when the END line is missing), cloud keys (AWS,
  GCP, Azure) and service tokens (GitHub, GitLab, Slack, Stripe, OpenAI,
  SendGrid, Twilio, npm, PyPI, Hugging Face, Prefect...);
- PII with a clear shape: e-mail addresses (international and URL-encoded
  ``%40`` ones too), payment cards (Luhn-valid, any separators), IBANs (mod-97;
  lower case with a known country's length), US SSNs, phone numbers (E.164,
  NANP-like ``415-555-0134``); IPv4 addresses when asked.

Keys spelled with full-width letters or zero-width characters are matched on the
NFKC-normalised text with zero-width characters dropped; when that finds a secret,
the normalised text (redacted) is what comes out.

The patterns follow detect-secrets' plugins (the tests check generated secrets
against detect-secrets 1.5.0); detect-secrets itself is not called at run time:
its scan costs 1-2.5 ms for a 200-character line, ``redact`` about 30-40 µs on a
loaded 2-core machine (``benchmarks/bench_redaction.py``). Every pattern is
linear in the text (a repeated class never starts where the previous character
could have continued it; what follows a keyword is bounded to a few hundred or
thousand characters; cheap substring checks skip the rest), so a 1 MB hostile
string costs well under a second. Numbers are redacted only when standalone
(not glued to a word or a longer number), so ids, timestamps and counts stay.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, overload

REDACTED = "[REDACTED]"

# -- credentials ---------------------------------------------------------------------------------

_PEM = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END[A-Z0-9 ]{0,40}-----|\Z)"
    r"|PuTTY-User-Key-File-\d+:.*?(?:Private-MAC: *[0-9a-fA-F]+|\Z)",
    re.DOTALL,
)

# scheme://user:password@host or scheme://token@host: the user info, up to the last "@" before the host
# (``ann:p@ss@host``); a password with spaces in it when a host and its port or path follow
# (``ann:hunter 2@db/x``). Every part is bounded, so a long URL without "@" costs its length once.
_URL_USERINFO = re.compile(
    r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]{0,30}://)"
    r"([^\s/?#@:]{0,256}:[^\s/]{0,1024}(?=@)"
    r"|[^\s/?#@:]{1,256}:[^\n/?#@]{1,256}(?=@[\w.-]{1,253}[:/])"
    r"|[^\s/?#@]{1,1024})@"
)

# Keys whose value is a secret. Strong words count inside a longer key (``dbpassword``,
# ``github_token``); weak ones only as a whole part of it (``pass=``, ``db_pwd``, ``auth:``),
# so that ``passed: 3``, ``tokens: 512``, ``author: ann`` and ``compass=n`` stay.
_STRONG_KEYS = (
    r"passwords?|passwd|passphrase|secrets?|token|api_?keys?|apikeys?|credentials?"
    r"|access_?keys?|private_?keys?|secret_?keys?|account_?keys?|shared_?access_?keys?|signing_?keys?"
    r"|encryption_?keys?|master_?keys?|client_?secrets?|cookies?|session_?keys?|connection_?strings?"
    r"|shared_?access_?signature|x-api-key|private_?key_?id"
    r"|passwort|mot_?de_?passe|contrase[ñn]a|senha|wachtwoord|пароль|密码"
)
_WEAK_KEYS = r"pwd|pass|pw|auth|sig|signature|conn_?str|dsn"
# matched on the lower-cased text: a keyword, then digits at most (never passed, tokens, author, pass_rate)
# (every branch starts with a letter: the regex engine then skips quickly to those)
_KEYWORD = re.compile(rf"(?:{_STRONG_KEYS}|{_WEAK_KEYS})\d{{0,3}}(?![a-z0-9_])")
_KEYWORD_ANY_CASE = re.compile(_KEYWORD.pattern, re.IGNORECASE)
_WEAK_KEYWORD = re.compile(rf"(?i:{_WEAK_KEYS})\d{{0,3}}")
# Every value below is bounded (a few hundred or thousand characters) and every repeated part is
# unambiguous, so a keyword costs at most its bound whatever follows it (``"password>" * N`` or an
# unterminated quote cost their length once, never once per keyword).
# the value: quoted (spaces and escaped characters inside; on one line, or over a few lines when
# closed), escaped-quoted (JSON inside a string), typographic quotes, or an unterminated quote (to the
# end of the line)
_QUOTED_VALUE = (
    r"""\\"(?:[^\\\n]|\\(?!")){0,1000}\\"|"(?:[^"\\\n]|\\.){0,1000}"|'(?:[^'\\\n]|\\.){0,1000}'"""
    r"""|"(?:[^"\\]|\\.){0,256}"|'(?:[^'\\]|\\.){0,256}'"""
    r"|“[^”\n]{0,1000}”|‘[^’\n]{0,1000}’|«[^»\n]{0,1000}»|„[^“”\n]{0,1000}[“”]"
)
_UNTERMINATED_QUOTE = r"""["“‘«„][^\n]{0,1000}"""
# (never failing once it starts, a bare value may run long: the keywords inside it are skipped)
_BARE_VALUE = r"""(?:[^\s"'&;,]|,(?=\S)(?![\w-]{1,40}[=:]))+"""
# a JSON array or object (one level of nesting inside), or a Python list, tuple or dict
_BRACKETED_VALUE = (
    r"\[(?:[^\[\]]|\[[^\[\]]{0,1000}\]){0,2000}\]"
    r"|\{(?:[^{}]|\{[^{}]{0,1000}\}){0,2000}\}"
    r"|\((?:[^()]|\([^()]{0,1000}\)){0,2000}\)"
)
# a value on the next lines: a YAML block scalar (``|``, ``>-``) or an empty value, then indented lines;
# or an empty "=" / ":" then one token alone on the next line (``password=\nhunter2``)
# (``_next_lines_end`` finds where it ends)
_NEXT_LINES_VALUE = r"(?:[|>][+-]?[1-9]?[+-]?[ \t]{0,64})?\r?\n"
_NEXT_LINE_TOKEN = re.compile(r"[^\s:=#<>\[\]{}]{1,200}(?=[ \t]{0,64}(?:\r?\n|\Z))")
_NEXT_LINES_LIMIT = 100
# what follows a secret's name: "=", ":", ":=", "=>", "->" (the name quoted or not, "=" URL-encoded or not);
# a quoted name, "," and a quoted value (a Python tuple); "is"; a flag's spaces
_AFTER_KEY = re.compile(
    r"(?:\\?[\"'”’]?[ \t]{0,64}(?::=|=>|->|=|:|%3[dD])[ \t]{0,64}"
    rf"(?P<value>{_QUOTED_VALUE}|{_BRACKETED_VALUE}|{_NEXT_LINES_VALUE}|{_UNTERMINATED_QUOTE}|{_BARE_VALUE})"
    rf"|[\"'][ \t]{{0,64}},[ \t]{{0,64}}(?P<listed>{_QUOTED_VALUE})"
    rf"|[ \t]{{1,64}}is:?[ \t]{{1,64}}(?P<stated>{_QUOTED_VALUE}|[^\s\"'][^\s\"']{{0,200}})"
    rf"|[ \t]{{1,64}}(?P<spaced>{_QUOTED_VALUE})"
    rf"|[ \t]{{1,64}}(?P<flagged>[^\s\"'-][^\s\"']{{0,1000}}))"
)
# a ";"-separated connection string (``Server=x;Password=p@ss w0rd;``): the value runs to the next ";"
_TO_SEMICOLON = re.compile(r"[^;\n]{0,1000}")
_TAG_VALUE_LIMIT = 1000
_QUOTED_STARTS = "\"'\\“‘«„[{(|>\r\n"
_TAG_OPENED = re.compile(r"<[\w.:-]*$")  # <db_password>...</db_password>
_FLAG_OPENED = re.compile(r"(?<![\w-])--[\w.-]*$")  # --db-password value
# YAML: the rest of the line after "password:" at the start of a line
_YAML_KEYED = re.compile(
    r"(?m)^[ \t]*(?:-[ \t]+)?[\"']?(?P<name>[\w.-]{1,80})[\"']?[ \t]*:[ \t]+(?P<value>[^\s#\"'|>].*)$"
)
_KEY_HINTS = (
    "pass",
    "pwd",
    "pw",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "sig",
    "cookie",
    "conn",
    "dsn",
    "contrase",
    "senha",
    "wachtwoord",
    "пароль",
    "密码",
)

_AUTH_HEADER = re.compile(
    r"(?i)(?P<key>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:[a-z0-9-]{1,20}[ \t]+)?)"
    r"(?P<value>[\w-]{1,40}=[^\n]{0,2000}|[^\s\"',;]+)"  # Digest and other "k=v, ..." schemes: to the line's end
)
_BEARER = re.compile(r"(?i)\b(?P<key>bearer[ \t]+)(?P<value>[A-Za-z0-9\-._~+/]{8,}=*)")
# curl's -u / --user user:password
_CURL_USER = re.compile(
    r"(?<![\w-])(?P<key>(?:-u|--user)(?:[ \t]{1,64}|=))"
    r"""(?P<value>"[^"\n]{1,256}"|'[^'\n]{1,256}'|[^\s"':]{0,256}:[^\s"']{1,256})"""
)
_BASIC = re.compile(r"(?i)\b(?P<key>basic[ \t]+)(?P<value>[A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])")

_JWT = re.compile(
    r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{2,}={0,2}\.[A-Za-z0-9_-]{2,}={0,2}(?:\.[A-Za-z0-9_\-+/]*={0,2})?"
)

# Service tokens and cloud key ids, after detect-secrets' plugins. Every branch starts with a
# literal character (the regex engine then skips quickly to those); ``_token`` drops a match
# glued to a word before it.
_TOKEN = re.compile(
    r"A(?:3T[A-Z0-9]|KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS key id
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|ya29\.[0-9A-Za-z_-]{20,}"  # Google OAuth access token
    r"|gh[opusr]_[A-Za-z0-9]{30,255}"  # GitHub
    r"|github_pat_[A-Za-z0-9_]{22,255}"
    r"|gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas)-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|GR1348941[A-Za-z0-9_-]{20,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}"  # Slack
    r"|sk_(?:live|test)_[0-9A-Za-z]{10,}|rk_(?:live|test)_[0-9A-Za-z]{10,}"  # Stripe
    r"|sk-[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
    r"|SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}"  # SendGrid
    r"|AC[a-z0-9]{32}(?![A-Za-z0-9])|SK[a-z0-9]{32}(?![A-Za-z0-9])"  # Twilio
    r"|npm_[A-Za-z0-9]{36}"  # npm
    r"|pypi-[A-Za-z0-9_-]{50,}"  # PyPI
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|pn[ub]_[A-Za-z0-9]{30,}"  # Prefect Cloud API key
    r"|dapi[a-f0-9]{32}"  # Databricks
    r"|shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"  # Shopify
    r"|sq0(?:atp|csp)-[0-9A-Za-z_-]{22,43}"  # Square
    r"|AKC[A-Za-z0-9]{10,}"  # Artifactory
    r"|M[A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}"  # Discord bot tokens
    r"|N[A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}"
    r"|O[A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}"
    r"|https://hooks\.slack\.com/services/[A-Za-z0-9_/]+"
)
# tokens that start with a digit: Mailchimp API keys and Telegram bot tokens (looked for when hinted)
_DIGIT_TOKEN = re.compile(
    r"[0-9a-f](?<![A-Za-z0-9_].)[0-9a-f]{31}-us[0-9]{1,2}(?![0-9])|\d(?<!\d.)\d{7,9}:AA[0-9A-Za-z_-]{33}"
)
# an AWS secret key (40 characters) a few characters after "aws" or "secret", not a hex digest
_AWS_SECRET = re.compile(
    r"(?i)(?:aws|secret)[^\n]{0,40}?(?<![A-Za-z0-9/+])(?P<value>(?![0-9a-f]{40})[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)

# -- PII -------------------------------------------------------------------------------------------

# an e-mail address is found from its "@": the local part backwards (on the reversed text), the domain forwards
# (RFC 5322 allows = ' / ? | { } ` in a local part too; in text they mostly delimit: email='ann@x.org')
_EMAIL_LOCAL_REVERSED = re.compile(r"[\w.!#$%&*+^~-]+")
_EMAIL_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]{0,62}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{2,59})")
# a run of digit groups (not part of a word, a version or a longer number) with 13 digits or more;
# ``_card`` looks inside it for a card number
_CARD = re.compile(r"\d(?<![^\W_].)(?<!\d[.,/_-].)(?:[ ./_-]{0,2}\d){12,}(?![^\W_])(?![.,/_-]\d)")
_IBAN = re.compile(r"[A-Z]{2}\d\d(?<![A-Za-z0-9]....)(?:[ ]?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
# lower or mixed case: only a known country's IBAN length (mod-97 alone passes one random string in 97)
_IBAN_ANY_CASE = re.compile(r"[a-zA-Z]{2}\d\d(?<![A-Za-z0-9]....)(?:[ ]?[a-zA-Z0-9]){11,30}(?![A-Za-z0-9])")
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip
_SSN = re.compile(r"\d\d\d([- ])(?<!\d....)(?<!\d-....)\d\d\1\d{4}(?!\d)(?!-\d)")
_SSN_NAMED = re.compile(
    r"(?i)\b(?P<key>ssn|social[ _-]?security(?:[ _-]?(?:number|no\.?|#))?)(?P<gap>[^\d\n]{0,20})(?P<value>\d{9})(?!\d)"
)
# ann%40example.com (URL-encoded): the local part backwards from "%40" (reversed), the domain forwards
_EMAIL_LOCAL_ENCODED_REVERSED = re.compile(r"[\w.!#$&*+^~-]{1,64}")
_E164 = re.compile(r"\+[1-9](?<![\w+]..)(?:[ .-]?\(?\d\)?){7,14}(?!\d)(?!-\d)")
# national formats with an unambiguous shape: 415-555-0134, 415.555.0134, (415) 555-0134
# (NANP-like: the area code and the exchange start with 2-9, so 100-200-3000 is not one)
_PHONE = re.compile(
    r"[2-9]\d\d(?<![\w+]...)(?<!\d[.-]...)([.-])[2-9]\d{2}\1\d{4}(?!\w)(?![.-]\d)"
    r"|\((?<![\w+]\()[2-9]\d{2}\)[ ]?[2-9]\d{2}[ .-]\d{4}(?!\w)(?![.-]\d)"
)
_IPV4 = re.compile(r"\d(?<![\d.].)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?![\d.])")
_DIGITS = re.compile(r"\d\d")
# obfuscated keys (``ｐａｓｓｗｏｒｄ``, ``pass\u200bword``): full-width forms and zero-width characters
_OBFUSCATION = re.compile("[\uff01-\uff5e\u200b-\u200d\u2060\ufeff\u00ad]")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def strip_url_credentials(text: str) -> str:
    """``text`` with the user info of every URL in it replaced by ``***``.

    ``s3://KEY:SECRET@bucket`` becomes ``s3://***@bucket``; used on every URL
    and error message that reaches a log line, an exception or a span.
    """
    return _URL_USERINFO.sub(r"\1***@", text) if "@" in text else text


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum used by payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """Whether ``iban`` (spaces allowed) passes the ISO 13616 mod-97 check."""
    compact = iban.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1
    except ValueError:
        return False


def _keep_key(match: re.Match[str]) -> str:
    return match.group("key") + REDACTED


def _is_key_start(text: str, start: int, weak: bool) -> bool:
    """Whether a keyword found at ``start`` begins a part of a key: any strong keyword does;
    a weak one after a non-alphanumeric character or as a camelCase part (``dbPwd``)."""
    if not weak or start == 0:
        return True
    before = text[start - 1]
    return not before.isalnum() or (before.islower() and text[start].isupper())


def _is_weak(keyword: str) -> bool:
    return _WEAK_KEYWORD.fullmatch(keyword) is not None


@lru_cache(maxsize=1024)
def is_secret_key(name: str) -> bool:
    """Whether a field named ``name`` holds a secret by its name (``password``, ``token``, ``client_secret``...)."""
    return _is_secret_key(name)


def _is_secret_key(name: str) -> bool:
    """Whether a key name ends with a secret's keyword (``db_password``, ``AccountKey``; not ``pass_rate``)."""
    return any(
        m.end() == len(name) and _is_key_start(name, m.start(), _is_weak(m.group(0)))
        for m in _KEYWORD_ANY_CASE.finditer(name)
    )


_CLOSING_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "„": "“”"}
_BLOCK_START = re.compile(r"(?:[|>][+-]?[1-9]?[+-]?[ \t]*)?\r?\n[ \t]*")


def _redacted_value(value: str) -> str:
    if value.startswith(REDACTED):
        return value
    if value[:1] in "|>\r\n":  # on the next lines: keep the block's indicator and the first indentation
        start = _BLOCK_START.match(value)
        head = start.group(0) if start else ""
        return head + REDACTED + value[len(value.rstrip("\r\n")) :][:2]
    if value[:1] in "[{(":
        return REDACTED
    if value[:1] in _CLOSING_QUOTES or value.startswith("\\"):
        quote = value[:2] if value.startswith("\\") else value[:1]
        closed = len(value) > len(quote) and value[-1] in _CLOSING_QUOTES.get(quote[-1], quote[-1])
        return quote + REDACTED + (value[-len(quote) :] if closed else "")
    kept = value.rstrip(".)]}>:")  # closing punctuation after a bare value is not part of it
    return REDACTED + value[len(kept) :]


def _tagged_value(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span of the text of ``<db_password>text</db_password>`` whose keyword spans ``start:end``
    (bounded: at most ``_TAG_VALUE_LIMIT`` characters looked at)."""
    if not text.startswith(">", end) or _TAG_OPENED.search(text, max(start - 64, 0), start) is None:
        return None
    close = text.find("<", end + 1, end + 1 + _TAG_VALUE_LIMIT)
    if close <= end + 1 or not text.startswith("</", close):
        return None
    return end + 1, close


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _next_lines_end(text: str, key_start: int, newline_end: int) -> int | None:
    """Where a value on the next lines ends: its lines indented deeper than the key's line (a YAML
    block, blank lines inside it included; not the next frame of a traceback after ``if not password:``),
    or, after an unindented key, one token alone on the next line (``password=\nhunter2``). At most
    ``_NEXT_LINES_LIMIT`` lines of 2,000 characters are looked at; None when there is no such value."""
    line_start = text.rfind("\n", max(key_start - 1000, 0), key_start) + 1
    key_indent = _indent(text[line_start:key_start])
    token = _NEXT_LINE_TOKEN.match(text, newline_end)
    if token is not None:
        return token.end() if key_indent == 0 else None
    end = pos = newline_end
    for _ in range(_NEXT_LINES_LIMIT):
        if pos >= len(text):
            break
        newline = text.find("\n", pos, pos + 2000)
        line = text[pos:newline] if newline >= 0 else text[pos : pos + 2000]
        next_pos = newline + 1 if newline >= 0 else pos + len(line)
        if line.strip():
            if _indent(line) <= key_indent:
                break
            end = next_pos
        pos = next_pos
        if newline < 0:
            break
    return end if end > newline_end else None


def _in_connection_string(text: str, start: int) -> bool:
    """Whether the key ending at ``start`` follows a ";" (``Server=x;Password=...``)."""
    before = text[max(start - 80, 0) : start].rstrip(" \t")
    part = before.rsplit(";", 1)
    return len(part) == 2 and re.fullmatch(r"[\w .-]*", part[1]) is not None


def _redact_keyed(text: str) -> str:
    """``text`` with the value after every secret-looking key redacted (``k=v``, ``k: v``, quoted,
    JSON, ``<k>v</k>``, ``--k v``)."""
    lower = text.lower()
    keywords = _KEYWORD if len(lower) == len(text) else _KEYWORD_ANY_CASE
    haystack = lower if keywords is _KEYWORD else text
    out: list[str] = []
    done = 0
    for keyword in keywords.finditer(haystack):
        start, end = keyword.span()
        if start < done or not _is_key_start(text, start, _is_weak(keyword.group(0))):
            continue
        tagged = _tagged_value(text, start, end)
        if tagged is not None:
            value_start, value_end = tagged
        else:
            after = _AFTER_KEY.match(text, end)
            if after is None:
                continue
            group = after.lastgroup or "value"
            if group == "flagged" and _FLAG_OPENED.search(text, max(start - 64, 0), start) is None:
                continue
            value_start, value_end = after.span(group)
            first = text[value_start : value_start + 1]
            if group == "value" and first and first in "|>\r\n" and text[value_end - 1 : value_end] == "\n":
                lines_end = _next_lines_end(text, start, value_end)
                if lines_end is None:
                    continue
                value_end = lines_end
            bare = group == "value" and first not in _QUOTED_STARTS
            if bare and _in_connection_string(text, start):
                semicolon = _TO_SEMICOLON.match(text, value_start)
                value_end = max(value_end, semicolon.end() if semicolon else value_end)
        out.append(text[done:value_start])
        out.append(_redacted_value(text[value_start:value_end]))
        done = value_end
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


def _redact_yaml(text: str) -> str:
    """``text`` with the rest of every line that starts with a secret's key (``password: two words``) redacted."""
    out: list[str] = []
    done = 0
    for match in _YAML_KEYED.finditer(text):
        if not _is_secret_key(match.group("name")):
            continue
        value_start, value_end = match.span("value")
        out.append(text[done:value_start])
        value = match.group("value")
        out.append(REDACTED if value.startswith(REDACTED) else _redacted_value(value))  # the whole rest of the line
        done = value_end
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


def _basic(match: re.Match[str]) -> str:
    value = match.group("value")
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return match.group(0)
    return match.group("key") + REDACTED if ":" in decoded and decoded.isprintable() else match.group(0)


def _token(match: re.Match[str]) -> str:
    start = match.start()
    before = match.string[start - 1] if start else " "
    return match.group(0) if before.isalnum() or before == "_" else REDACTED


def _redact_emails(text: str) -> str:
    return _redact_addresses(text, "@", _EMAIL_LOCAL_REVERSED)


def _redact_addresses(text: str, at_sign: str, local_reversed: re.Pattern[str]) -> str:
    """Every ``local<at_sign>domain`` in ``text`` redacted, in one pass: the domain is matched forwards
    from the sign and the local part backwards (on the reversed text), so no pattern backtracks over a
    long run before the sign."""
    out: list[str] = []
    done = 0
    reversed_text = ""
    at = text.find(at_sign)
    while at >= 0:
        domain = _EMAIL_DOMAIN.match(text, at + len(at_sign))
        if domain is not None and at > done:
            reversed_text = reversed_text or text[::-1]
            local = local_reversed.match(reversed_text, len(text) - at)
            if local is not None:
                out.append(text[done : max(at - len(local.group(0)), done)])
                out.append(REDACTED)
                done = domain.end()
        at = text.find(at_sign, max(at + len(at_sign), done))
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


def _card(match: re.Match[str]) -> str:
    """The card numbers in a run of digit groups, redacted: 13-19 Luhn-valid digits starting with 2-6,
    either one group or a card's grouping: 4 digits, then groups of 4-6, the last of 1-6
    (``4111 1111 1111 1111``, ``3782-822463-10005``, ``6011.0009.9013.9424``)."""
    text = match.group(0)
    groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", text)]
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        found = None
        digits = ""
        for j in range(i, len(groups)):
            size = groups[j][1] - groups[j][0]
            if (j > i and size > 6) or (j == i and 5 <= size < 13) or size > 19:
                break
            digits += text[groups[j][0] : groups[j][1]]
            if len(digits) > 19:
                break
            multi_ok = j == i or (groups[i][1] - groups[i][0] == 4 and all(g[1] - g[0] >= 4 for g in groups[i + 1 : j]))
            if len(digits) >= 13 and digits[0] in "23456" and multi_ok and luhn_valid(digits):
                found = j
        if found is None:
            i += 1
            continue
        spans.append((groups[i][0], groups[found][1]))
        i = found + 1
    if not spans:
        return text
    out: list[str] = []
    done = 0
    for start, end in spans:
        out.append(text[done:start])
        out.append(REDACTED)
        done = end
    out.append(text[done:])
    return "".join(out)


def _iban(match: re.Match[str]) -> str:
    """The IBANs in the match (the longest valid one from each start), redacted."""
    text = match.group(0)
    out: list[str] = []
    done = 0
    for start in [0, *(m.end() for m in re.finditer(" ", text))]:
        if start < done or not re.match(r"[A-Z]{2}\d\d", text[start : start + 4]):
            continue
        for end in range(len(text), start + 14, -1):
            # an IBAN ends where a group does: never inside a longer run of letters and digits
            if text[end - 1] != " " and _ends_group(text, end) and iban_valid(text[start:end]):
                out.append(text[done:start])
                out.append(REDACTED)
                done = end
                break
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


def _ends_group(text: str, end: int) -> bool:
    """Whether ``text[:end]`` ends a group of an IBAN match (its end, or a space follows): the first 16
    characters of ``be932497ec2d4e12857af934daab5432`` (a model id's hex) pass Belgium's length and mod-97,
    yet are no IBAN."""
    return end == len(text) or text[end] == " "


def _iban_any_case(match: re.Match[str]) -> str:
    """Lower- or mixed-case IBANs of a known country's length (``de89 3704 ...``), redacted."""
    text = match.group(0)
    if text.isupper():
        return text  # seen by _IBAN already
    out: list[str] = []
    done = 0
    for start in [0, *(m.end() for m in re.finditer(" ", text))]:
        length = _IBAN_LENGTHS.get(text[start : start + 2].upper())
        if start < done or length is None:
            continue
        end, count = start, 0
        while end < len(text) and count < length:
            count += text[end] != " "
            end += 1
        if count == length and _ends_group(text, end) and iban_valid(text[start:end]):
            out.append(text[done:start])
            out.append(REDACTED)
            done = end
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


def _redact_encoded_emails(text: str) -> str:
    """``ann%40example.com`` (an URL-encoded e-mail address, in a ``mailto:`` or a query) redacted."""
    return _redact_addresses(text, "%40", _EMAIL_LOCAL_ENCODED_REVERSED)


def _ssn(match: re.Match[str]) -> str:
    digits = match.group(0).replace(match.group(1), "")
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    valid = area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"
    return REDACTED if valid else match.group(0)


def _ssn_named(match: re.Match[str]) -> str:
    return match.group("key") + match.group("gap") + REDACTED


def _e164(match: re.Match[str]) -> str:
    """An E.164 number: 8-15 digits when grouped (``+44 20 7946 0958``), 10-15 when not (``+14155550134``;
    ``+12345678`` is more likely a signed count)."""
    number = match.group(0)
    digits = sum(ch.isdigit() for ch in number)
    least = 8 if any(not ch.isdigit() for ch in number[1:]) else 10
    return REDACTED if least <= digits <= 15 else number


def _ipv4(match: re.Match[str]) -> str:
    return REDACTED if all(int(part) <= 255 for part in match.group(0).split(".")) else match.group(0)


def redact_credentials(text: str) -> str:
    """``text`` with every credential in it replaced by ``[REDACTED]`` (the PII rules not applied)."""
    if "PRIVATE KEY" in text or "PuTTY" in text:
        text = _PEM.sub(REDACTED, text)
    if "://" in text and "@" in text:
        text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    lower = text.lower()
    if "authorization" in lower:
        text = _AUTH_HEADER.sub(_keep_key, text)
    if "bearer" in lower:
        text = _BEARER.sub(_keep_key, text)
    if "basic" in lower:
        text = _BASIC.sub(_basic, text)
    if "-u" in lower:
        text = _CURL_USER.sub(_keep_key, text)
    if any(hint in lower for hint in _KEY_HINTS):
        text = _redact_keyed(text)
        if ":" in text:
            text = _redact_yaml(text)
        if "aws" in lower or "secret" in lower:
            text = _AWS_SECRET.sub(lambda m: m.group(0)[: m.start("value") - m.start()] + REDACTED, text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "-us" in text or ":AA" in text:
        text = _DIGIT_TOKEN.sub(REDACTED, text)
    return _TOKEN.sub(_token, text)


def redact(text: str, *, ip_addresses: bool = False) -> str:
    """``text`` with credentials and PII replaced by ``[REDACTED]``; IPv4 addresses too with ``ip_addresses``.

    See the module's docstring for what is redacted; idempotent. About 30-40 µs for a 200-character log line.

    Example:
        >>> redact("login failed for ann@example.com password=hunter2")
        'login failed for [REDACTED] password=[REDACTED]'
    """
    text = _redact(text, ip_addresses)
    if not text.isascii() and _OBFUSCATION.search(text):
        # a key spelled with full-width letters or zero-width characters: matched on the normalised
        # text (NFKC, zero-width characters dropped), which is then what comes out, when it has a secret
        normalised = unicodedata.normalize("NFKC", text.translate(_ZERO_WIDTH))
        redacted = _redact(normalised, ip_addresses)
        if redacted != normalised:
            return redacted
    return text


def _redact(text: str, ip_addresses: bool) -> str:
    text = redact_credentials(text)
    if "@" in text:
        text = _redact_emails(text)
    if "%40" in text:
        text = _redact_encoded_emails(text)
    if _DIGITS.search(text) is None:
        return text
    if ip_addresses:
        text = _IPV4.sub(_ipv4, text)
    text = _CARD.sub(_card, text)
    text = _IBAN.sub(_iban, text)
    if not text.isupper():
        text = _IBAN_ANY_CASE.sub(_iban_any_case, text)
    text = _SSN.sub(_ssn, text)
    lower = text.lower()
    if "ssn" in lower or "social" in lower:
        text = _SSN_NAMED.sub(_ssn_named, text)
    if "+" in text:
        text = _E164.sub(_e164, text)
    return _PHONE.sub(REDACTED, text)


@overload
def redact_optional(text: str, *, enabled: bool = True) -> str: ...
@overload
def redact_optional(text: str | None, *, enabled: bool = True) -> str | None: ...
def redact_optional(text: str | None, *, enabled: bool = True) -> str | None:
    """``redact(text)`` when ``enabled`` and ``text`` is a non-empty string; anything else as it is."""
    return redact(text) if enabled and isinstance(text, str) and text else text


def clean_error_message(message: str | None, *, limit: int, redact_pii: bool = True) -> str | None:
    """An error message as the health store keeps it: redacted, then cut to ``limit``."""
    if message is None:
        return None
    if redact_pii:
        message = redact(message)
    return message if len(message) <= limit else message[: limit - 1] + "…"


_ID_KEYS = ("_id", "_ids", "_uuid")
_USER_ID_KEYS = ("model_id", "model_ids")
"""Keys that end like a machine id but hold text a person chose (a model id passed as a string)."""


def redact_fields(fields: Mapping[str, Any], *, enabled: bool = True) -> dict[str, Any]:
    """A copy of an event's resource or payload with its texts redacted (``enabled``): strings and
    lists of strings, except under machine id keys (``gpu_uuid``, ``flow_run_ids``; not ``model_id``,
    which a person may have typed). A resource id
    (``synthobs.table.<name>``) holds a name someone chose: it is redacted like the name."""
    if not enabled:
        return dict(fields)
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key.endswith(_ID_KEYS) and not key.endswith(_USER_ID_KEYS):
            out[key] = value
        elif isinstance(value, str):
            out[key] = redact(value)
        elif isinstance(value, (list, tuple)):
            out[key] = [redact(v) if isinstance(v, str) else v for v in value]
        else:
            out[key] = value
    return out
