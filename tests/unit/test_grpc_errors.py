from __future__ import annotations

import grpc
import pytest

from dockyard.adapters.grpc.errors import to_native, to_status
from dockyard.core import errors


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.InvalidArgument("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound("gone"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.Unimplemented("x"), grpc.StatusCode.UNIMPLEMENTED),
        (NotImplementedError(), grpc.StatusCode.UNIMPLEMENTED),
    ],
)
def test_typed_errors_map_to_their_status(exc: Exception, code: grpc.StatusCode) -> None:
    assert to_status(exc)[0] == code


def test_subclasses_map_like_their_parent() -> None:
    class BlobUnknown(errors.NotFound):
        pass

    assert to_status(BlobUnknown("blob unknown")) == (grpc.StatusCode.NOT_FOUND, "blob unknown")


def test_a_bug_is_internal_and_its_message_stays_in_the_log() -> None:
    code, message = to_status(KeyError("/secret/path"))
    assert code == grpc.StatusCode.INTERNAL
    assert "secret" not in message


class _Failed(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_clients_get_the_typed_error_back() -> None:
    native = to_native(_Failed(grpc.StatusCode.NOT_FOUND, "repository x unknown"))
    assert isinstance(native, errors.NotFound) and str(native) == "repository x unknown"
    assert isinstance(to_native(_Failed(grpc.StatusCode.UNAVAILABLE, "connect failed")), errors.Unavailable)
    assert isinstance(to_native(_Failed(grpc.StatusCode.DATA_LOSS, "?")), errors.Internal)
