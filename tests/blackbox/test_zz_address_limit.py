"""API.md "Additions in v1.1", "Accounts": failed logins are also limited per client address.

This file runs LAST, on purpose (its name sorts after every other test file, and conftest's
pytest_collection_modifyitems moves it behind everything else in any selection). Every
black-box request comes from one address, 127.0.0.1 (through haproxy too), and this test fills
that address's window of failed logins: the user service allows 50 per 5 minutes
(components/user/README.md, "Login throttle"), and once they are used up it refuses every login
from the address, the right password included, for up to 5 minutes. Any test after it would
fail; so would a second run against the same marketplace within 5 minutes (run.sh starts a
fresh one each time; against your own, wait or deselect with `-k "not address"`).

The failed logins of the other tests count against the same window, so they must leave room:
conftest counts every login answered 401 (failed_logins()), and this test checks they stayed
below ADDRESS_BUDGET_BEFORE_THIS. Tests that add failed logins elsewhere must keep it so.
"""

from conftest import concurrently, failed_logins, login_response, unique_email

ADDRESS_LIMIT = 50  # components/user/README.md: 50 failed logins per 5 minutes per address
ADDRESS_BUDGET_BEFORE_THIS = 40
BATCH = 10


def test_many_failed_logins_for_random_emails_from_one_client_get_429_with_retry_after():
    before = failed_logins()
    assert before <= ADDRESS_BUDGET_BEFORE_THIS, (
        f"the suite made {before} failed logins before this test; keep them under "
        f"{ADDRESS_BUDGET_BEFORE_THIS} (the address allows {ADDRESS_LIMIT} per 5 minutes, and "
        "every test shares it)")
    statuses, limited = [], None
    for _ in range(3 * ADDRESS_LIMIT // BATCH):
        batch = concurrently([lambda: login_response(unique_email("nobody"), "wrong password 123")]
                             * BATCH)
        statuses += [r.status for r in batch]
        limited = next((r for r in batch if r.status == 429), None)
        if limited:
            break
    assert limited, f"no 429 after {len(statuses)} failed logins for random emails"
    assert set(statuses) <= {401, 429}, statuses
    limited.expect_problem(429)
    retry = limited.header("retry-after") or ""
    assert retry.isdigit() and int(retry) > 0, f"Retry-After: {retry!r}"
    # "Well above what people mistyping behind one address produce": not a handful.
    assert failed_logins() >= 20, \
        f"the address was limited after {failed_logins()} failed logins in this session"
    # The limit holds: the next random email is refused as well.
    login_response(unique_email("nobody"), "wrong password 123").expect_problem(429)
