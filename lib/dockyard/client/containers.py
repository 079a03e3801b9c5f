"""``client.containers``: docker's container verbs, with docker's client-side semantics.

``create`` pulls a missing image first when the options' ``pull`` policy says so and the image's
name says which registry holds it (docker's ``--pull missing``); ``run`` attaches before it starts
the container, so no output is lost, and waits for its exit code. Whether the image was missing
is the error's reason, never its text.
"""

from __future__ import annotations

import builtins
import queue
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from dockyard.api.containers.v1 import containers_pb2 as pb
from dockyard.api.containers.v1 import containers_pb2_grpc
from dockyard.client.calls import Stream, unary
from dockyard.client.images import Images
from dockyard.client.types import (
    AttachOutput,
    Change,
    ContainerInfo,
    ContainerStats,
    ExecOptions,
    Limits,
    LogLine,
    Pruned,
    PullPolicy,
    PullProgress,
    RunOptions,
    RunResult,
    TopResult,
)
from dockyard.core.errors import NotFound, Reason
from dockyard.core.names import pullable

Writer = Callable[[bytes], object]


class Containers:
    def __init__(self, channel: Any, images: Images) -> None:
        self._stub = containers_pb2_grpc.ContainersStub(channel)
        self._images = images

    def create(
        self, options: RunOptions, *, on_pull: Callable[[PullProgress], None] | None = None
    ) -> ContainerInfo:
        """A new container, not started (``docker create``)."""
        return self.create_from_spec(options.to_pb(), pull=options.pull, on_pull=on_pull)

    def create_from_spec(
        self,
        spec: Any,
        *,
        pull: PullPolicy = "missing",
        on_pull: Callable[[PullProgress], None] | None = None,
    ) -> ContainerInfo:
        """``create`` for a caller that built the wire ContainerSpec itself (the CLI, whose flags
        reach beyond :class:`RunOptions`)."""
        request = pb.CreateContainerRequest(spec=spec)
        if pull == "always":
            self._images.pull(spec.image, platform=spec.platform, on_progress=on_pull)
        try:
            return ContainerInfo.from_pb(unary(self._stub.Create, request))
        except NotFound as exc:
            missing = exc.reason == Reason.NO_SUCH_IMAGE
            if not (missing and pull == "missing" and pullable(spec.image)):
                raise
        self._images.pull(spec.image, platform=spec.platform, on_progress=on_pull)
        return ContainerInfo.from_pb(unary(self._stub.Create, request))

    def start(self, container: str) -> ContainerInfo:
        return ContainerInfo.from_pb(unary(self._stub.Start, pb.StartContainerRequest(id=container)))

    def run(
        self,
        options: RunOptions,
        *,
        detach: bool = False,
        stdout: Writer | None = None,
        stderr: Writer | None = None,
        on_pull: Callable[[PullProgress], None] | None = None,
    ) -> RunResult:
        """``docker run``: create, attach, start, wait. Output goes to ``stdout``/``stderr`` as it
        comes, or is collected into the result. Detached: started, and returned at once."""
        created = self.create(options, on_pull=on_pull)
        if detach:
            self.start(created.id)
            return RunResult(created.id, None)
        out, err = bytearray(), bytearray()
        code = self.attach(created.id, start=True, stdout=stdout or out.extend, stderr=stderr or err.extend)
        return RunResult(created.id, code, bytes(out), bytes(err))

    def attach(
        self,
        container: str,
        *,
        start: bool = False,
        stdout: Writer | None = None,
        stderr: Writer | None = None,
    ) -> int:
        """Follow a container's output until it exits (starting it first when ``start``, after the
        attach is in place); its exit code."""
        first = pb.AttachInput(start=pb.AttachStart(container_id=container, start=start, wait=True))
        code = -1
        for message in Stream(self._stub.Attach(iter([first])), lambda m: m):
            kind = message.WhichOneof("output")
            if kind == "stdout" and stdout is not None:
                stdout(message.stdout)
            elif kind == "stderr" and stderr is not None:
                stderr(message.stderr)
            elif kind == "exit_code":
                code = message.exit_code
        return code

    def open_attach(
        self, container: str, *, start: bool = False, stdin: bool = False, rows: int = 0, cols: int = 0
    ) -> Attachment:
        """A live attach whose input you drive (docker's hijacked attach): iterate it for the
        output, ``write`` stdin, ``close_stdin``, ``resize``; the last message is the exit code.
        With ``start`` the container is started once attached, and a ``started`` message says so."""
        first = pb.AttachStart(
            container_id=container, start=start, stdin=stdin, wait=True, rows=rows, cols=cols
        )
        return Attachment(self._stub.Attach, pb.AttachInput(start=first), pb.AttachInput)

    def wait(self, container: str, *, next_exit: bool = False) -> int:
        """Block until the container exits; its exit code. ``next_exit``: a created container is
        waited for to start and then exit (else a container not running answers at once)."""
        request = pb.WaitContainerRequest(id=container, next_exit=next_exit)
        return int(unary(self._stub.Wait, request).exit_code)

    def stop(self, container: str, timeout: int | None = None) -> ContainerInfo:
        request = pb.StopContainerRequest(id=container)
        if timeout is not None:
            request.timeout_seconds = timeout
        return ContainerInfo.from_pb(unary(self._stub.Stop, request))

    def kill(self, container: str, signal: str = "KILL") -> None:
        unary(self._stub.Kill, pb.KillContainerRequest(id=container, signal=signal))

    def remove(self, container: str, *, force: bool = False, volumes: bool = False) -> None:
        unary(self._stub.Remove, pb.RemoveContainerRequest(id=container, force=force, volumes=volumes))

    def get(self, container: str) -> ContainerInfo:
        """One container by id, id prefix or name (NotFound, reason NO_SUCH_CONTAINER, if none)."""
        return ContainerInfo.from_pb(unary(self._stub.Inspect, pb.InspectContainerRequest(id=container)))

    def list(self, *, all: bool = False, filters: tuple[str, ...] = ()) -> list[ContainerInfo]:
        """Running containers (every one with ``all``); ``filters`` as ``ps --filter``."""
        found: list[ContainerInfo] = []
        token = ""
        while True:
            page = unary(
                self._stub.List, pb.ListContainersRequest(all=all, filters=filters, page_token=token)
            )
            found += [ContainerInfo.from_pb(c) for c in page.containers]
            if not (token := page.next_page_token):
                return found

    def logs(self, container: str, *, follow: bool = False, tail: int = 0) -> Stream[LogLine]:
        """The container's output, from its log; ``follow`` keeps it open until the container ends
        (or the stream is cancelled)."""
        request = pb.LogsRequest(id=container, follow=follow, tail=tail)
        return Stream(self._stub.Logs(request), LogLine.from_pb)

    def commit(
        self,
        container: str,
        reference: str = "",
        *,
        message: str = "",
        author: str = "",
        changes: Sequence[str] = (),
    ) -> str:
        """A new image of the container's changes (docker commit), named ``reference`` if given;
        ``changes`` are Dockerfile instructions (``CMD ["sh"]``, ``ENV k=v``). The image's id."""
        request = pb.CommitRequest(
            container_id=container, reference=reference, message=message, author=author, changes=list(changes)
        )
        return str(unary(self._stub.Commit, request).image_id)

    def open_exec(self, options: ExecOptions) -> Attachment:
        """A process run in a running container (``docker exec``), its input yours to drive as
        with :meth:`open_attach`: the output, then an ``exit`` message with its exit code. A command
        that cannot run fails the iteration (reason COMMAND_NOT_FOUND / COMMAND_NOT_EXECUTABLE)."""
        return Attachment(self._stub.Exec, pb.ExecInput(start=options.to_pb()), pb.ExecInput)

    def top(self, container: str, ps_args: Iterable[str] = ()) -> TopResult:
        """The container's processes as ``ps`` shows them (``ps -ef`` without ``ps_args``)."""
        return TopResult.from_pb(unary(self._stub.Top, pb.TopRequest(id=container, ps_args=list(ps_args))))

    def diff(self, container: str) -> builtins.list[Change]:
        """The paths its writable layer added, changed or deleted (``docker diff``)."""
        return [Change.from_pb(c) for c in unary(self._stub.Diff, pb.DiffRequest(id=container)).changes]

    def stats(
        self, containers: Iterable[str] = (), *, stream: bool = False
    ) -> Stream[builtins.list[ContainerStats]]:
        """Samples of resource use, one list a second (the first after a second: CPU is a
        difference); one list only unless ``stream``. No containers: every running one."""
        request = pb.StatsRequest(ids=list(containers), stream=stream)
        return Stream(self._stub.Stats(request), lambda r: [ContainerStats.from_pb(s) for s in r.stats])

    def copy_from(self, container: str, path: str) -> Stream[bytes]:
        """A tar of ``path`` in the container, in chunks (``docker cp CONTAINER:PATH -``): the last
        component under its base name; ``dir/.`` and ``/`` give what is inside, without the dir."""
        return Stream(self._stub.CopyFrom(pb.CopyFromRequest(id=container, path=path)), lambda c: c.data)

    def copy_to(self, container: str, directory: str, tar_chunks: Iterable[bytes]) -> None:
        """Extract the tar streamed as ``tar_chunks`` into ``directory`` of the container, which
        must exist (``docker cp - CONTAINER:DIR``); the chunks are sent as they are read."""

        def requests() -> Iterator[Any]:
            yield pb.CopyToInput(target=pb.CopyFromRequest(id=container, path=directory))
            for chunk in tar_chunks:
                yield pb.CopyToInput(data=chunk)

        unary(self._stub.CopyTo, requests())

    def prune(self) -> Pruned:
        """Remove every container that is not running (created, exited, dead)."""
        done = unary(self._stub.Prune, pb.PruneContainersRequest())
        return Pruned(tuple(done.deleted), done.space_reclaimed)

    def rename(self, container: str, name: str) -> ContainerInfo:
        """AlreadyExists if another container has ``name``."""
        return ContainerInfo.from_pb(
            unary(self._stub.Rename, pb.RenameContainerRequest(id=container, name=name))
        )

    def update(self, container: str, limits: Limits) -> ContainerInfo:
        """Change its resource limits (those given); a running container gets them at once."""
        request = pb.UpdateContainerRequest(id=container)
        limits.to_pb(request.resources)
        return ContainerInfo.from_pb(unary(self._stub.Update, request))

    def pause(self, container: str) -> ContainerInfo:
        """Freeze every process of a running container (FailedPrecondition if it is not running)."""
        return ContainerInfo.from_pb(unary(self._stub.Pause, pb.PauseContainerRequest(id=container)))

    def unpause(self, container: str) -> ContainerInfo:
        return ContainerInfo.from_pb(unary(self._stub.Unpause, pb.PauseContainerRequest(id=container)))


_END = object()


class Attachment:
    """One attach or exec call: its output as :class:`AttachOutput`, its input from any thread.
    ``message`` is the call's input message type (AttachInput, ExecInput: the same fields)."""

    def __init__(self, call: Callable[[Iterator[Any]], Any], first: Any, message: Any) -> None:
        self._message = message
        self._input: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._input.put(first)
        self._stream = Stream(call(iter(self._input.get, _END)), AttachOutput.from_pb)

    def __iter__(self) -> Iterator[AttachOutput]:
        return self._stream

    def write(self, data: bytes) -> None:
        self._input.put(self._message(stdin=data))

    def close_stdin(self) -> None:
        self._input.put(self._message(stdin_eof=True))

    def resize(self, rows: int, cols: int) -> None:
        self._input.put(self._message(resize=pb.Resize(rows=rows, cols=cols)))

    def cancel(self) -> None:
        self._input.put(_END)
        self._stream.cancel()
