"""Typed dependencies so handlers read like sentences."""

from typing import Annotated

from fastapi import Depends, Request

from app.chat.service import ChatService
from app.state import Services


def get_services(request: Request) -> Services:
    """The services the lifespan built."""
    return request.app.state.services


def get_chat(request: Request) -> ChatService:
    """The chat service."""
    return request.app.state.services.chat


ServicesDep = Annotated[Services, Depends(get_services)]
ChatDep = Annotated[ChatService, Depends(get_chat)]
