"""A reply's JSON with its position filled in is the text serialising the reply would give."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.errors import ErrorCode, LedgerError
from domain.replies import Reply
from services.ledger.batches import _with_position

texts = st.text(max_size=20)
balances = st.dictionaries(
    st.sampled_from(["credits", "messages", "é"]),
    st.fixed_dictionaries(
        {
            "available": st.integers(-(2**40), 2**40),
            "spendable": st.integers(-(2**40), 2**40),
            "held": st.integers(0, 2**40),
            "allocation_remaining": st.integers(0, 2**40),
            "purchased_remaining": st.integers(0, 2**40),
            "next_reset_at": st.none() | st.datetimes(),
        }
    ),
    max_size=2,
)


@given(
    command_id=texts,
    account_id=texts,
    balances=balances,
    rejected=st.booleans(),
    position=st.none() | st.integers(0, 2**63 - 1),
)
def test_a_position_filled_in_gives_the_serialised_reply(
    command_id: str, account_id: str, balances: dict, rejected: bool, position: int | None
) -> None:
    reply = Reply.model_validate(
        {
            "command_id": command_id,
            "account_id": account_id,
            "status": "rejected" if rejected else "accepted",
            "error": {"code": ErrorCode.insufficient_credits, "message": "no"}
            if rejected
            else None,
            "balances": balances,
        }
    )
    decided = reply.model_dump_json()
    answered = reply.model_copy(update={"position": position})
    assert _with_position(decided, answered) == answered.model_dump_json()


def test_a_reply_serialised_in_another_field_order_is_serialised_again() -> None:
    reply = Reply.rejected(
        command_id="c", account_id="a", error=LedgerError(ErrorCode.invalid_command, "x")
    ).model_copy(update={"position": 7})
    assert _with_position('{"position":null,"x":1}', reply) == reply.model_dump_json()
