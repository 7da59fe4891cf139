"""Alertmanager's webhook payload (version 4), as much of it as Ballast reads. Strict: a malformed
payload is refused with the field at fault and changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    # Alertmanager adds fields over time; unknown ones are ignored, the ones we read are required.
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class Alert(_Wire):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    fingerprint: str = ""


class AlertmanagerPayload(_Wire):
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str
    alerts: list[Alert] = Field(min_length=1, max_length=1000)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
