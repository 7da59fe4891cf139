"""Building blocks shared by the three custom resources and the trainer contracts.

Every model serializes with camelCase names (Kubernetes style) and accepts snake_case in Python.
Spec models forbid unknown fields, so a typo in a manifest is an error that names the field
instead of a silently ignored setting.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

GROUP = "ballast.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

BASE_VERSION_PATTERN = r"^base_v[1-9][0-9]*$"
FINETUNE_VERSION_PATTERN = r"^ft_v[1-9][0-9]*\.[1-9][0-9]*$"
MODEL_VERSION_PATTERN = r"^(base_v[1-9][0-9]*|ft_v[1-9][0-9]*\.[1-9][0-9]*)$"
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

Digest = Annotated[str, StringConstraints(pattern=DIGEST_PATTERN), Field(description="Content digest, `sha256:<hex>`.")]
ModelVersion = Annotated[
    str,
    StringConstraints(pattern=MODEL_VERSION_PATTERN, max_length=64),
    Field(description="Model version name: `base_v<N>` for a base, `ft_v<N>.<M>` for the M-th fine-tune of base N."),
]
BaseVersion = Annotated[
    str,
    StringConstraints(pattern=BASE_VERSION_PATTERN, max_length=64),
    Field(
        description="A base model version, `base_v<N>`. Fine-tunes always start from a base, never from a fine-tune."
    ),
]
ObjectName = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=63)]


def is_base_version(version: str) -> bool:
    return re.fullmatch(BASE_VERSION_PATTERN, version) is not None


class Model(BaseModel):
    """Base for every Ballast model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    def to_wire(self) -> dict:
        """The JSON-ready dict with camelCase keys, leaving out unset optionals."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def evolve(self, **changes: Any) -> Self:
        """A validated copy with `changes` applied. Unlike `model_copy(update=...)`, a misspelled
        field name is an error and every new value is validated."""
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(unknown)}")
        return type(self).model_validate({**dict(self), **changes})


class StatusModel(Model):
    """Status is written by the operator; tolerate fields other tools (kopf) add beside ours."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class SecretKeyRef(Model):
    name: ObjectName = Field(description="Name of a Secret in the resource's namespace.")
    access_key_key: str = Field("accessKey", description="Key in the Secret that holds the access key id.")
    secret_key_key: str = Field("secretKey", description="Key in the Secret that holds the secret access key.")


class KeyRef(Model):
    name: ObjectName = Field(description="Name of the object in the resource's namespace.")
    key: str = Field(
        "ca.crt",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key that holds the PEM bundle.",
    )


class CABundleRef(Model):
    """Where the PEM bundle of the CA(s) that sign the store's certificate is: one key of exactly one
    Secret or ConfigMap in the pool's namespace."""

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.secret) != has(self.configMap)",
                    "message": "objectStore.caBundle: name exactly one of secret or configMap",
                }
            ]
        }
    }

    secret: KeyRef | None = Field(None, description="A Secret key holding the PEM bundle.")
    config_map: KeyRef | None = Field(None, description="A ConfigMap key holding the PEM bundle.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> CABundleRef:
        if (self.secret is None) == (self.config_map is None):
            raise ValueError("objectStore.caBundle: name exactly one of secret or configMap")
        return self


class ObjectStoreSpec(Model):
    """An S3-compatible bucket. Credentials from a Secret (never inline), or else the caller's own identity."""

    endpoint: str = Field(description="host:port of the S3 endpoint, without scheme.", min_length=1, max_length=253)
    secure: bool = Field(True, description="Use HTTPS (the default); false only for a plain-HTTP test store.")
    region: str | None = Field(
        None,
        description="The bucket's region (e.g. eu-west-1). Unset: asked of the store.",
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9][-a-z0-9]*$",
    )
    bucket: str = Field(description="Bucket name.", min_length=3, max_length=63)
    prefix: str = Field(
        "", description="Key prefix under which anchor/, pool/, runs/ and models/ live.", max_length=200
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Secret with the access and secret keys. Unset: the operator, the CLI and the Jobs find "
        "credentials themselves: AWS_* or MINIO_* variables, ~/.aws/credentials, then an IAM role (IRSA's "
        "web identity token, ECS or EC2 metadata).",
    )
    ca_bundle: CABundleRef | None = Field(
        None, description="CA bundle the store's certificate is checked against (a private CA). Unset: the system's."
    )
    service_account_name: ObjectName | None = Field(
        None,
        description="ServiceAccount the training and gate Jobs run as, for credentials from its identity (IRSA: "
        "one annotated with eks.amazonaws.com/role-arn). Unset: the namespace's default ServiceAccount.",
    )


class ModelRef(Model):
    """A model artifact: its version name, where it is and its content digest."""

    version: ModelVersion
    uri: str = Field(description="s3://bucket/key of the weights file.", pattern=r"^s3://", max_length=1024)
    digest: Digest


class BaseModelRef(ModelRef):
    version: BaseVersion


ConditionStatus = Literal["True", "False", "Unknown"]


REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(StatusModel):
    """A standard Kubernetes condition, with metav1.Condition's required fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        # metav1.Condition requires a message (it may be empty); the apiserver fills in the default.
        json_schema_extra=lambda schema: schema.setdefault("required", []).append("message"),
    )

    type: str = Field(min_length=1, max_length=316)
    status: ConditionStatus
    reason: str = Field(
        description="CamelCase reason, one of the documented constants.", pattern=REASON_PATTERN, max_length=1024
    )
    message: str = Field("", max_length=32768)
    last_transition_time: datetime
    observed_generation: int | None = Field(None, description="The generation the condition was computed for.")


Conditions = Annotated[
    list[Condition],
    Field(
        default_factory=list,
        description="Ready, Reconciling and Stalled (kstatus) beside the kind's own; one per type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


class Approval(Model):
    """A person's sign-off on a Review verdict, in their own authenticated name.

    The admission policy shipped with Ballast refuses an approval that is set at creation, set
    while the verdict is not Review, names anyone but the requesting user, comes from a user
    without the `approve` verb on finetuneruns, or covers another model than the run's.
    """

    by: str = Field(min_length=1, max_length=253, description="The approver's username (request.userInfo.username).")
    groups: list[str] = Field(
        default_factory=list, max_length=64, description="The approver's groups (checked again before a release)."
    )
    at: datetime = Field(description="When the approval was given (RFC 3339).")
    reason: str = Field(min_length=1, max_length=1024, description="Why the Review verdict is acceptable.")
    model_digest: Digest = Field(description="Digest of the model the approval covers (status.model.digest).")


Verdict = Literal["Pass", "Review", "Reject"]

# The kstatus summary in `kubectl get`: Ready beside the kind's own columns, its message with -o wide.
READY_COLUMNS: list[dict[str, Any]] = [
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Message", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].message', "priority": 1},
]
