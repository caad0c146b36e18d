"""A schemathesis check for the contract test (tests/api/contract.rs), loaded with
SCHEMATHESIS_HOOKS=ordershop_contract_checks.

schemathesis.toml lets a valid request be answered 422, because some refusals depend on data a
schema cannot describe. This check keeps that allowance narrow: a 422 to a request generated
as valid must be one of those refusals, never a validation error, which would mean the document
allows something the server refuses.
"""

import schemathesis

# 422 codes a valid request can get: what it refers to, or its history, is not as it says.
STATEFUL_REFUSALS = {"unknown_reference", "idempotency_key_reused"}
# Validations a schema cannot express, as they compare the body with the path or with the
# entity's current state: the body's own id against the path's, and a reference that an update
# may not change (an inventory record's product, an order's customer, a billing's order).
AGAINST_STATE = ("invalid id: the body is for ", "cannot change (")


@schemathesis.check
def valid_requests_are_refused_only_for_state(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"a 422 without a JSON body: {response.text[:200]!r}")
    error, detail = body.get("error"), body.get("detail", "")
    if error in STATEFUL_REFUSALS or (
        error == "invalid" and any(marker in detail for marker in AGAINST_STATE)
    ):
        return None
    raise AssertionError(
        f"a request the document calls valid was refused: {error}: {detail} "
        "(the document must state this limit)"
    )
