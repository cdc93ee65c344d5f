"""The rules file: defaults as the design lists them, overrides, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from launch_watchdog.rules import RulesError, load_rules

DESIGN_TABLE = {
    "machine_type_unsupported": "invalid_spec",
    "invalid_argument": "invalid_spec",
    "permission_denied": "permission",
    "not_found": "not_found",
    "quota_exceeded": "quota",
    "repeated_failures": "repeated_failure",
    "unhandled_exception": "crash",
    "http_error": "http",
    "wandb_init_failed": "wandb",
    "image_pull_failed": "image_pull",
    "launch_job_error": "crash",
    "queue_pop_error": "wandb",
    "network_retry_loop": "network",
    "start_timeout": "timeout",
    # Start-up failures the real agent exits with, and the categories wandb 0.31 runs showed wrong.
    "queue_not_found": "not_found",
    "wandb_credentials_rejected": "permission",
    "wandb_unreachable": "network",
    "gcp_credentials_missing": "permission",
    "gcp_unavailable": "network",
    "wandb_connection_failing": "network",
}


def test_defaults_match_the_design_table() -> None:
    """Every rule id of design section 7 exists with its category, and no other."""
    rules = load_rules()
    assert {r.id: r.category for r in rules.rules} == DESIGN_TABLE
    assert rules.precedence[:3] == ("quota", "permission", "invalid_spec")
    assert rules.precedence[-1] == "crash"


def test_windowed_and_two_line_rules_carry_their_parameters() -> None:
    """repeated_failures is 3 in 50 lines, queue_pop_error 3 in the run, unhandled_exception two-line."""
    rules = {r.id: r for r in load_rules().rules}
    assert (rules["repeated_failures"].count, rules["repeated_failures"].window) == (3, 50)
    assert (rules["queue_pop_error"].count, rules["queue_pop_error"].window) == (3, 0)
    assert rules["unhandled_exception"].then is not None


def test_override_file_replaces_adds_and_disables(tmp_path: Path) -> None:
    """A --rules file replaces a rule by id, adds new ones and turns defaults off."""
    extra = tmp_path / "rules.toml"
    extra.write_text(
        """
[[rules]]
id = "quota_exceeded"
pattern = 'Quota \\w+ exceeded'

[[rules]]
id = "network_retry_loop"
enabled = false

[[rules]]
id = "oom_killed"
category = "crash"
pattern = 'OOMKilled'
ignore_case = true
"""
    )
    rules = {r.id: r for r in load_rules(extra).rules}
    assert rules["quota_exceeded"].category == "quota"
    assert rules["quota_exceeded"].regex.search("Quota GPUS exceeded")
    assert not rules["quota_exceeded"].regex.search("ResourceExhausted")
    assert "network_retry_loop" not in rules
    assert rules["oom_killed"].regex.search("container was oomkilled")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[[rules]]\nid = 'x'\ncategory = 'crash'\npattern = '('\n", "rule 'x': `pattern` is not a valid regular"),
        ("[[rules]]\nid = 'x'\ncategory = 'bogus'\npattern = 'a'\n", "category 'bogus' is not one of"),
        ("[[rules]]\nid = 'x'\ncategory = 'crash'\npatern = 'a'\n", "unknown key(s) patern"),
        ("[[rules]]\nid = 'x'\ncategory = 'crash'\n", "rule 'x': `pattern` is required"),
        ("[[rules]]\nid = 'Bad Id'\n", "`id` must be a lower_snake_case name"),
        ("[[rules]]\nid = 'x'\ncategory = 'crash'\npattern = 'a'\ncount = 0\n", "`count` must be a whole number >= 1"),
        ("rulez = []\n", "unknown top-level key(s) rulez"),
        ("[[rules]\n", "not valid TOML"),
        ("precedence = ['crash', 'crash']\n", "names a category twice"),
        ("[[rules]]\nid = 'x'\ncategory = 'crash'\npattern = 'a'\naction = 'warn'\n", "`action` must be one of stop"),
        ("[[rules]]\nid = 'x'\ncategory = 'crash'\npattern = 'a'\nsources = ['pipes']\n", "`sources` must be"),
        ("[[rules]]\nid = 'x'\ncategory = 'crash'\npattern = 'a'\nsources = []\n", "`sources` must be"),
        (
            "[[rules]]\nid = 'x'\ncategory = 'crash'\npattern = 'a'\naction = 'explain'\nblock = true\n",
            "only a stop rule can head a block",
        ),
        ("[fallback.agent_gone]\ncategory = 'crash'\n", "fallback 'agent_gone': unknown fallback"),
        ("[fallback.agent_exit]\ncategory = 'bogus'\n", "category 'bogus' is not one of"),
        ("[fallback.agent_exit]\ncolour = 'red'\n", "unknown key(s) colour"),
    ],
)
def test_bad_rules_files_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    """Each mistake in a rules file is reported with the file, the rule and the key."""
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_rules_file_says_so(tmp_path: Path) -> None:
    """A --rules path that does not exist is an error naming the option."""
    with pytest.raises(RulesError, match=r"cannot read the rules file.*--rules"):
        load_rules(tmp_path / "nope.toml")


def test_sources_actions_and_blocks_of_the_defaults() -> None:
    """Log files feed only the rules meant for them; one explain rule; one block rule."""
    rules = {r.id: r for r in load_rules().rules}
    assert rules["unhandled_exception"].sources == {"agent", "follow"}
    assert rules["queue_not_found"].sources == {"agent", "cli_log", "follow"}
    assert [r.id for r in rules.values() if "run_log" in r.sources] == []
    assert [r.id for r in rules.values() if "core_log" in r.sources] == ["wandb_connection_failing"]
    assert [r.id for r in rules.values() if not r.stops] == ["wandb_connection_failing"]
    assert [r.id for r in rules.values() if r.block] == ["launch_job_error"]


def test_rules_for_a_source_put_block_heads_first() -> None:
    """A line that is a block head and a specific error opens the incident as a block."""
    agent = load_rules().for_source("agent")
    assert agent[0].id == "launch_job_error"
    assert "wandb_connection_failing" in {r.id for r in agent}
    assert {r.id for r in load_rules().for_source("run_log")} == set()


def test_precedence_puts_the_new_categories_above_crash_and_wandb() -> None:
    """Missing credentials beat the broad wandb rule; network beats crash."""
    rules = load_rules()
    assert rules.rank("permission") < rules.rank("wandb")
    assert rules.rank("network") < rules.rank("wandb") < rules.rank("crash")
    assert rules.rank("not_found") < rules.rank("network")


def test_fallbacks_come_from_the_defaults_and_can_be_overridden(tmp_path: Path) -> None:
    """[fallback.ID] in a --rules file replaces keys of the default fallback."""
    defaults = load_rules()
    assert defaults.fallback("agent_start_timeout").category == "timeout"
    assert defaults.fallback("agent_exit").category == "crash"
    extra = tmp_path / "rules.toml"
    extra.write_text("[fallback.agent_exit]\ncategory = 'wandb'\n")
    changed = load_rules(extra).fallback("agent_exit")
    assert (changed.category, changed.description) == ("wandb", defaults.fallback("agent_exit").description)


def test_an_override_can_move_a_rule_to_other_sources(tmp_path: Path) -> None:
    """`sources` and `action` merge like any other key."""
    extra = tmp_path / "rules.toml"
    extra.write_text("[[rules]]\nid = 'not_found'\nsources = ['agent', 'run_log']\naction = 'explain'\n")
    rule = {r.id: r for r in load_rules(extra).rules}["not_found"]
    assert (rule.sources, rule.stops, rule.category) == ({"agent", "run_log"}, False, "not_found")
