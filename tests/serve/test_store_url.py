"""Store URLs never show their password: in start lines and in connection errors."""

from __future__ import annotations

import pytest

from faceforge.serve.store import StoreUnavailable, open_store, redacted
from tests.process_helpers import free_port


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://faces:s3cret@db:5432/faces", "postgresql://faces:***@db:5432/faces"),
        ("postgresql://faces@db:5432/faces", "postgresql://faces@db:5432/faces"),
        ("postgresql://a:b@c@db/faces", "postgresql://a:***@db/faces"),
        ("sqlite:///var/faces.db", "sqlite:///var/faces.db"),
    ],
)
def test_redacted_hides_only_the_password(url, shown):
    assert redacted(url) == shown


def test_a_failed_connection_does_not_print_the_password():
    url = f"postgresql://faces:s3cret@127.0.0.1:{free_port()}/faces"  # nobody listens there
    with pytest.raises(StoreUnavailable) as error:
        open_store(url).galleries()
    message = str(error.value)
    assert "cannot connect to the store postgresql://faces:***@127.0.0.1:" in message
    assert "s3cret" not in message
