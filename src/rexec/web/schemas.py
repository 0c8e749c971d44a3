"""Request and response bodies (they also make the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Field(min_length=1, max_length=256, pattern=r"^[^\x00]+$")


class Message(BaseModel):
    message: str


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=150)
    password: str = Field(max_length=1024)


class RefreshRequest(BaseModel):
    refreshToken: str = Field(min_length=1, max_length=512)


class Tokens(BaseModel):
    token_type: Literal["Bearer"]
    access_token: str
    expires_in: int
    expires_on: int
    refresh_token: str


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=1024)
    role: Literal["Owner", "Contributor", "Reader"] = "Contributor"


class UserInfo(BaseModel):
    username: str
    role: str
    createdAt: str | None


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=255)
    snapshotId: str | None = Field(None, max_length=64)


class SessionCreated(BaseModel):
    id: str


class SessionInfo(BaseModel):
    id: str
    name: str
    owner: str | None = None
    state: str
    computeNode: str
    createdAt: str | None
    lastActive: str | None
    busy: bool = False


class Parameter(BaseModel):
    name: str = Name
    value: Any = None
    type: str | None = Field(None, max_length=32, description="R type; see docs/api.md")


class ExecuteRequest(BaseModel):
    code: str = Field(max_length=10_000_000)
    inputParameters: list[Parameter] = Field(default_factory=list, max_length=1000)
    outputParameters: list[str] = Field(default_factory=list, max_length=1000)


class OutputParameter(BaseModel):
    name: str
    value: Any = None
    type: str | None = None


class ExecuteResult(BaseModel):
    executionId: int
    success: bool
    errorMessage: str | None
    warnings: list[str]
    consoleOutput: str
    outputParameters: list[OutputParameter]
    changedFiles: list[str]
    plots: list[str]


class HistoryEntry(BaseModel):
    executionId: int
    code: str
    success: bool
    errorMessage: str | None
    consoleOutput: str
    warnings: list[str]
    changedFiles: list[str]
    startTime: str | None
    endTime: str | None


class WorkspaceObject(BaseModel):
    name: str
    classes: list[str]


class FileInfo(BaseModel):
    name: str
    size: int
    modified: float


class SnapshotCreate(BaseModel):
    name: str = Field("", max_length=255)


class SnapshotInfo(BaseModel):
    id: str
    name: str
    owner: str | None = None
    sessionId: str | None
    createdAt: str | None
    size: int
