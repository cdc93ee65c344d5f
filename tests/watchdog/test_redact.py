"""Redaction: secret env values anywhere, token shapes, private keys across blocks."""

from __future__ import annotations

from launch_watchdog.redact import Redactor, secret_values

ENV = {
    "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
    "HF_TOKEN": "hf_AbCdEfGhIjKlMnOpQrStUv",
    "DB_PASSWORD": "correct-horse",
    "MY_SERVICE_SECRET": "s3cr3t-value",
    "GITHUB_TOKEN": "ghp_1234567890",
    "SHORT_KEY": "abc",
    "PATH": "/usr/bin:/bin",
    "WANDB_ENTITY": "team-ml",
}


def test_secret_names() -> None:
    """*_KEY, *_TOKEN, *_SECRET and *PASSWORD* are secrets; short values and others are not."""
    assert set(secret_values(ENV)) == {"WANDB_API_KEY", "HF_TOKEN", "DB_PASSWORD", "MY_SERVICE_SECRET", "GITHUB_TOKEN"}


def test_values_are_replaced_wherever_they_appear() -> None:
    """A value inside a URL, a dict repr or glued to other text is replaced, naming the variable."""
    r = Redactor(secret_values(ENV))
    text = (
        "https://api:0123456789abcdef0123456789abcdef01234567@api.wandb.ai "
        "{'pw': 'correct-horse'} xs3cr3t-valuex ghp_1234567890 team-ml"
    )
    out = r.redact(text)
    for value in ("0123456789abcdef", "correct-horse", "s3cr3t-value", "ghp_1234567890"):
        assert value not in out
    assert "[REDACTED:WANDB_API_KEY]" in out
    assert "team-ml" in out


def test_token_shapes() -> None:
    """Bearer/Basic headers, ya29 OAuth tokens and hf_ tokens are redacted without env values."""
    r = Redactor({})
    out = r.redact(
        "Authorization: Bearer abc.def-ghi\n"
        "headers={'authorization': 'Basic YXBpOmtleQ=='}\n"
        "token ya29.a0AfH6SMBxyz-123_abc\n"
        "hf_ZyXwVuTsRqPoNmLkJiHg\n"
    )
    assert "abc.def-ghi" not in out
    assert "YXBpOmtleQ==" not in out
    assert "ya29.a0AfH6" not in out
    assert "hf_ZyXw" not in out
    assert "Authorization: Bearer [REDACTED:authorization]" in out


def test_private_key_split_across_blocks() -> None:
    """A PEM key whose body arrives in several blocks is redacted line by line until its END."""
    stream = Redactor({}).stream()
    first = stream.redact("before\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\n")
    second = stream.redact("hkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\nafter\n")
    assert "MIIEvQ" not in first
    assert "hkiG9w" not in second
    assert second.endswith("-----END PRIVATE KEY-----\nafter\n")
    assert stream.redact("MIIEvQ is fine here\n") == "MIIEvQ is fine here\n"


def test_one_line_json_key() -> None:
    """A service-account JSON with an escaped PEM on one line loses its key body."""
    out = Redactor({}).redact('{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n"}')
    assert "MIIE" not in out


OTHER = "1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c"
"""A key the watchdog was not given (another W&B key in the job's own env)."""


def test_a_secret_variable_a_text_sets_is_redacted_whoever_s_it_is() -> None:
    """An env entry with a secret-looking name, as pprint, JSON or protobuf text print it (pprint may
    break the entry over two prefixed lines), or an assignment: its value goes; others stay."""
    r = Redactor({})
    texts = [
        f"{{'name': 'WANDB_API_KEY', 'value': '{OTHER}'}}",
        f"wandb:        'env': [{{'name': 'WANDB_API_KEY',\nwandb:                  'value': '{OTHER}'}},",
        f'{{"name": "WANDB_API_KEY", "value": "{OTHER}"}}',
        f'env {{\n  name: "WANDB_API_KEY"\n  value: "{OTHER}"\n}}',
        f"export WANDB_API_KEY={OTHER} && python train.py",
    ]
    for text in texts:
        out = r.redact(text)
        assert OTHER not in out, text
        assert "[REDACTED:WANDB_API_KEY]" in out, text
    kept = "{'name': 'WANDB_PROJECT', 'value': 'sandbox'} {'name': 'SHORT_KEY', 'value': 'abc'} LR=0.001"
    assert r.redact(kept) == kept


def test_an_env_entry_cut_between_blocks_loses_its_value_all_the_same() -> None:
    """The pipe's read ends after the entry's name: the value at the start of the next block goes."""
    stream = Redactor({}).stream()
    first = stream.redact("wandb:        'env': [{'name': 'WANDB_API_KEY',\n")
    second = stream.redact(f"wandb:                  'value': '{OTHER}'}},\n")
    assert OTHER not in first + second
    assert "[REDACTED:WANDB_API_KEY]" in second
    assert stream.redact(f"'value': '{OTHER[:8]}xx'") == f"'value': '{OTHER[:8]}xx'"  # only the next block
