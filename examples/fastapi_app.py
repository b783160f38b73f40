"""A small chat API over threadmem-mongo, with FastAPI; needs the ``fastapi`` extra.

Endpoints are plain ``def`` functions: FastAPI runs them in its threadpool, so the
blocking pymongo calls never stall the event loop.

Run it from the repository's root, on the embedded store (or set
``THREADMEM_MONGODB_URI``), and it serves on http://127.0.0.1:8000::

    pip install -e ".[embedded,fastapi]"
    uvicorn examples.fastapi_app:app

The caller is identified by an ``X-User-Id`` header. That stands in for real
authentication, which this example leaves out; the ownership checks are the point.
"""

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from threadmem_mongo import (
    InvalidInputError,
    MessageNotFoundError,
    RoleThread,
    StoreUnavailableError,
    ThreadNotFoundError,
    ThreadStore,
    ThreadTooLargeError,
    VersionConflictError,
)


class NewThread(BaseModel):
    name: str | None = None
    public: bool = False
    metadata: dict[str, Any] | None = None


class NewMessage(BaseModel):
    role: str
    text: str
    images: list[str] = []
    private: bool = False


class ThreadChanges(BaseModel):
    version: int  # the version the client last read; the change applies only to it
    name: str | None = None
    public: bool | None = None
    metadata: dict[str, Any] | None = None


def current_user(x_user_id: Annotated[str | None, Header()] = None) -> str:
    if not x_user_id:
        raise HTTPException(status_code=401, detail="missing X-User-Id header")
    return x_user_id


User = Annotated[str, Depends(current_user)]


def summary(thread: RoleThread) -> dict[str, Any]:
    return {
        "id": thread.id,
        "owner_id": thread.owner_id,
        "name": thread.name,
        "public": thread.public,
        "metadata": thread.metadata,
        "version": thread.version,
        "message_count": thread.message_count,
        "created": thread.created,
        "updated": thread.updated,
    }


def checked_images(images: list[str]) -> list[str]:
    """Accept URLs and data URIs only: post() would read any other string as a local path."""
    for image in images:
        if not image.startswith(("https://", "http://", "data:")):
            raise InvalidInputError("images must be http(s) URLs or data: URIs")
    return images


def error_handler(status: int) -> Any:
    def handle(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    return handle


def version_conflict(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VersionConflictError)
    detail = (
        f"the thread is at version {exc.actual_version}, but the change was based on "
        f"version {exc.expected_version}; read the thread again and retry"
    )
    return JSONResponse(
        status_code=409, content={"detail": detail, "current_version": exc.actual_version}
    )


def create_app(store: ThreadStore | None = None) -> FastAPI:
    """Return the app, storing threads in ``store`` (the configured default if omitted)."""
    app = FastAPI(title="threads")
    # --8<-- [start:handlers]
    app.add_exception_handler(ThreadNotFoundError, error_handler(404))
    app.add_exception_handler(MessageNotFoundError, error_handler(404))
    app.add_exception_handler(InvalidInputError, error_handler(422))
    app.add_exception_handler(ThreadTooLargeError, error_handler(413))
    app.add_exception_handler(StoreUnavailableError, error_handler(503))
    app.add_exception_handler(VersionConflictError, version_conflict)
    # --8<-- [end:handlers]

    # --8<-- [start:load]
    def load(thread_id: str, user: str, *, write: bool = False) -> RoleThread:
        """The thread, if ``user`` may see it (or change it, with ``write``)."""
        thread = RoleThread.get(thread_id, store=store)
        if thread.owner_id != user and (write or not thread.public):
            # Answer as if it did not exist, so ids of other users' threads leak nothing.
            raise ThreadNotFoundError(thread_id)
        return thread

    # --8<-- [end:load]

    @app.post("/threads", status_code=201)
    def create_thread(body: NewThread, user: User) -> dict[str, Any]:
        thread = RoleThread(
            owner_id=user, name=body.name, public=body.public, metadata=body.metadata, store=store
        )
        return summary(thread)

    @app.get("/threads")
    def list_threads(user: User, limit: int = 50) -> list[dict[str, Any]]:
        # last=0: the listing needs the threads' fields, not their messages.
        threads = RoleThread.find(
            owner_id=user, newest_first=True, limit=limit, last=0, store=store
        )
        return [summary(thread) for thread in threads]

    @app.get("/threads/{thread_id}")
    def get_thread(thread_id: str, user: User) -> dict[str, Any]:
        return summary(load(thread_id, user))

    # --8<-- [start:change_thread]
    @app.patch("/threads/{thread_id}")
    def change_thread(thread_id: str, body: ThreadChanges, user: User) -> dict[str, Any]:
        thread = load(thread_id, user, write=True)
        if thread.version != body.version:
            raise VersionConflictError(thread.id, body.version, thread.version)
        if body.name is not None:
            thread.name = body.name
        if body.public is not None:
            thread.public = body.public
        if body.metadata is not None:
            thread.metadata = body.metadata
        thread.save()  # conditional on the version read above: a concurrent change -> 409
        return summary(thread)

    # --8<-- [end:change_thread]

    # --8<-- [start:post_message]
    @app.post("/threads/{thread_id}/messages", status_code=201)
    def post_message(thread_id: str, body: NewMessage, user: User) -> dict[str, Any]:
        thread = load(thread_id, user, write=True)
        message = thread.post(
            body.role, body.text, images=checked_images(body.images), private=body.private
        )
        return message.model_dump()

    # --8<-- [end:post_message]

    @app.get("/threads/{thread_id}/messages")
    def list_messages(thread_id: str, user: User) -> list[dict[str, Any]]:
        thread = load(thread_id, user)
        owner = thread.owner_id == user
        return [m.model_dump() for m in thread.messages(include_private=owner)]

    @app.get("/threads/{thread_id}/openai")
    def export_openai(thread_id: str, user: User) -> dict[str, Any]:
        thread = load(thread_id, user)
        return thread.to_openai(include_private=thread.owner_id == user)

    return app


app = create_app()
