"""confirm_destructive: the confirmation protocol as a tool (``agent19 confirm``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agent19.config import AccessMode
from agent19.errors import InputError, ModeError
from agent19.safety.protocol import Confirmation
from agent19.tools.registry import ToolContext, tool
from agent19.units import human_size


class ConfirmArgs(BaseModel):
    sql: str | None = Field(default=None, description="one statement that can lose data (DROP, TRUNCATE, "
                            "DELETE/UPDATE of many rows, ...); omitted with --token alone: a person at a terminal "
                            "confirms that token",
                            json_schema_extra={"user_sql": "statement"})  # agent19.safety.gate.user_sql
    token: str | None = Field(default=None, description="step 2: the challenge token from step 1")
    phrase: str | None = Field(
        default=None,
        description="only when the operator allows it (AGENT19_ALLOW_MODEL_CONFIRMATION=1, for pipelines whose "
        "approver is a program): the phrase as typed by that approver. Otherwise refused: the human confirms "
        "out of band (elicitation, the page, or `agent19 confirm --token` at a terminal)",
    )
    archive: bool = Field(default=False, description="copy the table's rows to <table>_archive_<yyyymmdd> and "
                          "verify the copy before the destructive statement (give it in both steps)")
    max_rows: int = Field(default=200, ge=1, le=10_000, description="most rows returned if the statement returns any")
    acknowledge: list[str] = Field(default=[], description="lint rule codes of lock warnings you accept for this "
                                   "statement (only under the operator's AGENT19_REQUIRE_LOCK_ACK policy)")


def render_confirmation(c: Confirmation) -> str:
    lines = [f"outcome: {c.outcome} (mode {c.mode.value})" + (f", confirmed through {c.channel}" if c.channel else "")]
    lines += [f"refused: {r}" for r in c.reasons]
    r = c.report
    if r is not None:
        lines.append(f"statement: {r.statement}")
        for f in r.findings:
            lines.append(f"  [{f.risk.value}] {f.kind}: {f.reason}")
        for t in r.impact.targets if r.impact else []:
            rows = f"{t.rows_text} rows, " if t.rows is not None else ""
            rows += f"{t.rows_touched} of them touched (measured), " if t.rows_touched is not None else ""
            lines.append(f"  {t.kind} {t.name}{'.' + t.column if t.column else ''}: {rows}{human_size(t.size_bytes)}"
                         + (f", also removes {t.cascade_rows} rows in referencing tables" if t.cascade_rows else ""))
            lines += [f"    depends on it: {d.kind} {d.name} {d.detail}".rstrip() for d in t.dependents]
        if r.checklist:
            lines.append("checklist:")
            lines += [f"  [{i.status}] {i.item} - {i.detail}" for i in r.checklist]
        for a in r.archive:
            lines.append(f"archive option: {a.sql};  or: {a.pg_dump}")
        for alt in r.alternatives:
            lines.append(f"did you mean: {alt.sql}  - {alt.why}")
        if r.phrase and c.outcome not in {"executed", "approved"}:
            lines.append(f"phrase to type exactly: {r.phrase}")
        if r.token:
            lines.append(f"token (expires {r.expires_at:%Y-%m-%d %H:%M:%S} UTC): {r.token}")
        if r.confirm_url:
            lines.append(f"confirmation page (for the human): {r.confirm_url}")
        if r.confirm_command:
            lines.append(f"or, at a terminal: {r.confirm_command}")
        if r.next_step:
            lines.append(r.next_step)
    for a in c.archived:
        lines.append(f"archived {a.source} -> {a.archive}: {a.archive_rows} of {a.source_rows} rows (verified)")
    if c.result is not None:
        lines.append(f"{c.result.statement}: {c.result.row_count} rows, {c.result.transaction}")
    return "\n".join(lines)


@tool(
    name="confirm_destructive",
    briefs={
        "sql": "step 1", "token": "step 2", "phrase": "only if the operator allows it",
        "archive": "copy the rows aside first", "max_rows": "",
    },
    title="Confirm destructive SQL",
    args=ConfirmArgs,
    result=Confirmation,
    cli="confirm",
    positional=("sql",),
    read_only=False,
    destructive=True,
    idempotent=False,
    render_text=render_confirmation,
    exit_code=lambda c: 1 if c.outcome == "refused" else 0,
    examples=(
        "agent19 confirm 'DROP TABLE old_users'",
        "agent19 confirm --token a19.TOKEN --mode execute    (a person at a terminal confirms a token)",
        "agent19 confirm 'DROP TABLE old_users' --mode execute --token a19.TOKEN   (runs it once confirmed)",
        "agent19 confirm 'DELETE FROM sessions' --archive --mode execute",
    ),
)
def confirm_destructive(ctx: ToolContext, args: ConfirmArgs) -> Confirmation:
    """The only way a statement that can lose data runs: an impact report, then a phrase a human types; it runs
    only in execute mode.

    Step 1 — call with `sql` alone: returns what is destructive and how risky (found in the
    statement, because its kind is not known to lose nothing, or measured by running it in a
    savepoint that was rolled back), the impact from the live database (exact rows, size, foreign
    keys, views, triggers, publications, rows CASCADE also removes, whether a backup is known), a
    checklist, an archive option, "did you mean" alternatives, the phrase, and a challenge token.
    Show it to the human.
    The human confirms: when the client supports elicitation, agent19 asks them directly (one call
    is enough). Otherwise they confirm out of band — on the one-time page in `confirm_url` or with
    `confirm_command` at a terminal — and then you call again with the same `sql` and the `token`
    (no phrase): it runs if the token is this server's, unexpired and unused, and nothing at stake
    changed (counted again, exactly, under a lock). A phrase passed as an argument is refused unless
    the operator allowed it. Never type the phrase yourself: it is the human's consent.

    Step 1 works in every mode; step 2 runs the statement only in execute mode (in read-only and
    dry-run it is refused, saying so). Every step, and which channel confirmed, is written to the
    audit log."""
    from agent19.safety import gate, policy
    from agent19.safety.protocol import Protocol

    protocol = Protocol(ctx.settings, ctx.db, ctx.elicit, ctx.progress)
    if args.sql is None:
        if not args.token:
            raise InputError("give the statement (sql), or --token alone to confirm a token at a terminal",
                             "e.g. agent19 confirm 'DROP TABLE old_users'")
        return protocol.approve(args.token, None, protocol.channel)
    executes = bool(args.token) or (ctx.elicit is not None and ctx.settings.mode is AccessMode.EXECUTE)
    tested = policy.tested(ctx.settings, ctx.db, args.sql) if executes and ctx.settings.mode is AccessMode.EXECUTE \
        else None
    if tested is not None and tested.refusal:
        raise ModeError(f"refused: {tested.refusal}", "a human's confirmation does not replace the dry run the "
                        "operator requires; nothing was run")
    if executes and ctx.settings.mode is AccessMode.EXECUTE and not args.archive:  # require_verified_backup
        why = next((w for st in gate.parse_input(args.sql)
                    if (w := policy.unbacked(ctx.settings, ctx.db, st.node))), None)
        if why:
            raise ModeError(f"refused: {why}", "confirm it again from step 1 with archive=true (agent19 confirm "
                            "'...' --archive): the rows are copied and verified before it runs; nothing was run")
    if executes and ctx.settings.mode is AccessMode.EXECUTE and ctx.settings.require_lock_ack:
        # a human's consent to losing data is not an acknowledgement of the locks the statement takes
        why = policy.unacknowledged(ctx.settings, args.sql, ctx.live_catalog(), args.acknowledge)
        if why:
            raise ModeError(f"refused: {why}", "acknowledge each lock warning by its rule code (acknowledge / "
                            "--acknowledge) once the team accepts it; nothing was run")
    if args.token or (ctx.elicit is not None and ctx.settings.mode is AccessMode.EXECUTE):
        done = (protocol.confirm(args.sql, args.token, args.phrase, args.archive, args.max_rows) if args.token
                else protocol.run_with_elicitation(args.sql, args.archive, args.max_rows))
        if tested is not None and done.executed:
            policy.ran(ctx.settings, ctx.db, tested)  # the migration's next change may run on the schema it left
        return done
    return protocol.challenge(args.sql, args.archive)
