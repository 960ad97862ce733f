"""Keep secrets out of the task files `data from-repo` writes.

Two layers, because a repository leaks secrets both ways:
- files whose name says they hold credentials (credentials.json, secrets.yaml, *.pem, id_rsa,
  .env, a keystore) are skipped whole;
- in every other file, private-key blocks, well-known token formats (AWS, GitHub, GitLab,
  Slack, Stripe, OpenAI, Google, Hugging Face, JWTs) and the values of secret-named settings
  (`password = ...`, `api_key: ...`, `"token": "..."`) are replaced by `[REDACTED]`.

Hand-written rather than detect-secrets: that library reports findings for a person to review
and has no redaction; these are its high-precision patterns, applied as substitutions.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

REDACTED = "[REDACTED]"

SECRET_NAMES = {
    "credentials",
    "credentials.json",
    "credentials.yaml",
    "credentials.yml",
    "secrets",
    "secrets.json",
    "secrets.yaml",
    "secrets.yml",
    "secrets.toml",
    "secret.json",
    "secret.yaml",
    "secret.yml",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    ".env",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".htpasswd",
    "service-account.json",
    "service_account.json",
}
SECRET_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".asc", ".gpg", ".ppk")
# A name part that says "this file holds secrets": secrets.prod.yaml, aws_credentials.ini.
SECRET_WORDS = re.compile(r"(^|[._-])(secrets?|credentials?|passwords?)([._-]|$)", re.IGNORECASE)

PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK)?-----.*?(-----END \1PRIVATE KEY( BLOCK)?-----|\Z)",
    re.DOTALL,
)
TOKENS = re.compile(
    "|".join(
        [
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
            r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",  # GitHub tokens
            r"\bgithub_pat_[A-Za-z0-9_]{22,}\b",
            r"\bglpat-[A-Za-z0-9_-]{20,}\b",  # GitLab
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",  # Slack
            r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b",  # Stripe
            r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}\b",  # OpenAI, Anthropic
            r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API key
            r"\bhf_[A-Za-z0-9]{30,}\b",  # Hugging Face
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b",  # JWT
        ]
    )
)
# key = value, key: value, "key": "value" where the key names a secret. The value must look
# like one (4+ characters, not a placeholder or a reference to an environment variable).
ASSIGNMENT = re.compile(
    r"""(?P<key>["']?[A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|"""
    r"""access[_-]?key|private[_-]?key|auth[_-]?key|client[_-]?secret)["']?)"""
    r"""(?P<sep>\s*[:=]\s*)(?P<quote>["']?)(?P<value>[^\s"',;#}]{4,})(?P=quote)""",
    re.IGNORECASE,
)
PLACEHOLDER = re.compile(
    r"^(\$\{?[A-Za-z_]|<|\{\{|%\(|os\.|env|none|null|true|false|changeme|x{4,}|\*{4,}|"
    r"\.\.\.|redacted|example|your[_-]|process\.|getenv|self\.|config\.|settings\.)",
    re.IGNORECASE,
)


CONFIG_SUFFIXES = {
    ".ini",
    ".cfg",
    ".conf",
    ".properties",
    ".env",
    ".yaml",
    ".yml",
    ".toml",
    ".json",
    ".tf",
}


def is_secret_file(path: str) -> bool:
    """Whether a repository path names a file that holds credentials."""
    name = PurePosixPath(path).name
    lower = name.lower()
    if lower in SECRET_NAMES or lower.startswith(".env"):
        return True
    if lower.endswith(SECRET_SUFFIXES):
        return True
    # Only data and configuration files: secret_santa.py is code, secrets.prod.yaml is not.
    suffix = PurePosixPath(lower).suffix
    if suffix not in CONFIG_SUFFIXES | {"", ".txt", ".xml"}:
        return False
    return bool(SECRET_WORDS.search(PurePosixPath(lower).stem))


def redact(text: str, path: str = "") -> tuple[str, int]:
    """The text with private keys, tokens and secret settings' values replaced; and how many.

    A secret-named setting's value is redacted when quoted, and unquoted too in configuration
    files (`password = hunter2` in an .ini); in code an unquoted value is an expression."""
    config = PurePosixPath(path).suffix.lower() in CONFIG_SUFFIXES
    count = 0

    def sub(_match: re.Match) -> str:
        nonlocal count
        count += 1
        return REDACTED

    def assignment(match: re.Match) -> str:
        nonlocal count
        value = match.group("value")
        if not (match.group("quote") or config):
            return match.group(0)
        if PLACEHOLDER.match(value) or value == REDACTED or not _looks_secret(value):
            return match.group(0)
        count += 1
        q = match.group("quote")
        return f"{match.group('key')}{match.group('sep')}{q}{REDACTED}{q}"

    text = PRIVATE_KEY.sub(sub, text)
    text = TOKENS.sub(sub, text)
    text = ASSIGNMENT.sub(assignment, text)
    return text, count


def _looks_secret(value: str) -> bool:
    """A literal, not code: an identifier call or attribute (`get_token()`, `args.key`) is not."""
    if value.endswith(")") or "(" in value:
        return False
    return not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+", value)
