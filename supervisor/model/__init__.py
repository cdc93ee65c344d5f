"""The supervisor's state and decisions, as pure data and functions.

Nothing here does I/O, sleeps, or knows about anyio or the cloud clients: observations come in as
plain records with the time they were made, decisions go out as action records. That keeps every
rule of the design (dispatch formula, claim timeout, breaker, failing hung items) testable as plain
function calls, and the daemon a thin loop of observe → update → decide → act.
"""
