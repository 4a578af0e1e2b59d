"""S3 as AWS documents it, on top of moto's: the call log and injected faults, a bucket the caller may not use,
and the limits moto leaves out.

moto serves S3 through its own dispatch (``S3Response.bucket_response``/``key_response``), not the
``BaseResponse.call_action`` that ``infra.local.faults`` wraps, so S3 calls would be neither logged nor open to
``aws.faults.fail_next(...)``. ``install()`` wraps those two entry points (in-process and served over HTTP alike):
every S3 request is logged in ``aws.calls`` under its API name (``CreateMultipartUpload``, ``UploadPart``,
``ListObjectsV2``, ...; bodies are never copied), then goes through the same admission as every other service
(injected delays and errors), then through these checks, each an answer AWS gives and moto does not:

- ``deny(aws, bucket)``: the caller has no permission on the bucket (its role's policy does not allow it, or the
  bucket policy denies it): every request on it answers ``403 AccessDenied``, as S3 does.
- ``PartNumber`` outside 1..10,000: ``400 InvalidArgument`` (S3's multipart limits; moto accepts any positive
  number). The 5 MiB minimum of every part but the last is moto's own (``EntityTooSmall`` on completion).
- ``DeleteObjects`` with more than 1,000 keys: ``400 MalformedXML`` (S3's documented maximum per request).
- SSE-KMS with a key the account's KMS does not have (``CreateMultipartUpload``, ``PutObject``, ``CopyObject``):
  ``400 KMS.NotFoundException``, or ``400 KMS.DisabledException`` for a disabled key; moto stores the object
  under any key id.

Example:
    >>> from infra.local import s3 as emulated_s3
    >>> emulated_s3.deny(aws, "snapshots-bucket")          # the role lost its access
    >>> aws.faults.fail_next("UploadPart", code="InternalError", status=500)
"""

from __future__ import annotations

import re
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from xml.sax.saxutils import escape

from infra.local import state
from infra.local.account import Account
from infra.local.faults import CallRecord

MAX_PART_NUMBER = 10_000
MAX_DELETE_KEYS = 1_000

# Sub-resources (query parameters) that name an operation of their own, by HTTP method, for the call log.
_BUCKET_SUB = {
    "versioning": "BucketVersioning",
    "lifecycle": "BucketLifecycleConfiguration",
    "policy": "BucketPolicy",
    "encryption": "BucketEncryption",
    "publicAccessBlock": "PublicAccessBlock",
    "tagging": "BucketTagging",
    "acl": "BucketAcl",
    "location": "BucketLocation",
    "cors": "BucketCors",
    "ownershipControls": "BucketOwnershipControls",
    "notification": "BucketNotificationConfiguration",
    "logging": "BucketLogging",
}


@dataclass
class _Rules:
    denied: dict[str, frozenset[str] | None] = field(default_factory=dict)  # bucket -> operations (None: all)


_RULES: weakref.WeakKeyDictionary[Any, _Rules] = weakref.WeakKeyDictionary()
_ORIGINAL: dict[str, Callable[..., Any]] = {}


def deny(aws: Account, bucket: str, operations: Iterable[str] | None = None) -> None:
    """Answer ``403 AccessDenied`` to requests on ``bucket`` (only ``operations``, API names, when given)."""
    with aws.lock:
        _RULES.setdefault(aws, _Rules()).denied[bucket] = frozenset(operations) if operations is not None else None


def allow(aws: Account, bucket: str) -> None:
    """Undo ``deny`` for ``bucket``."""
    with aws.lock:
        _RULES.setdefault(aws, _Rules()).denied.pop(bucket, None)


def operation_name(level: str, method: str, query: dict[str, list[str]], headers: Any) -> str:
    """The S3 API name of a request (``level``: ``bucket`` or ``key``).

    >>> operation_name("key", "PUT", {"partNumber": ["1"], "uploadId": ["u"]}, {})
    'UploadPart'
    >>> operation_name("bucket", "GET", {"list-type": ["2"], "prefix": ["a/"]}, {})
    'ListObjectsV2'
    """
    method = method.upper()
    copy = bool(headers.get("x-amz-copy-source"))
    if level == "key":
        if "uploadId" in query:
            return {
                "PUT": "UploadPartCopy" if copy else "UploadPart",
                "POST": "CompleteMultipartUpload",
                "DELETE": "AbortMultipartUpload",
                "GET": "ListParts",
            }.get(method, method)
        if "uploads" in query and method == "POST":
            return "CreateMultipartUpload"
        for sub, name in (("tagging", "ObjectTagging"), ("acl", "ObjectAcl"), ("retention", "ObjectRetention")):
            if sub in query:
                return {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method) + name
        if method == "PUT":
            return "CopyObject" if copy else "PutObject"
        return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject", "POST": "RestoreObject"}.get(
            method, method
        )
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    for sub, name in _BUCKET_SUB.items():
        if sub in query:
            return {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method) + name
    if method == "GET":
        if "list-type" in query:
            return "ListObjectsV2"
        if "versions" in query:
            return "ListObjectVersions"
        if "uploads" in query:
            return "ListMultipartUploads"
        return "ListObjects"
    return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(method, method)


def _where(request: Any, full_url: str) -> tuple[str, str]:
    from moto.s3.responses import S3Response
    from moto.s3.utils import bucket_name_from_url
    from moto.s3bucket_path.utils import bucket_name_from_url as bucketpath_bucket_name_from_url

    if S3Response.subdomain_based_buckets(request):
        bucket = bucket_name_from_url(full_url) or ""
        key = unquote(urlparse(full_url).path).lstrip("/")
    else:
        bucket = bucketpath_bucket_name_from_url(full_url) or ""
        key = unquote(urlparse(full_url).path).lstrip("/")[len(bucket) :].lstrip("/")
    return bucket, key


def _error(code: str, message: str, status: int, **extra: str) -> tuple[int, dict[str, str], bytes]:
    """An S3 error document as S3 writes it (REST-XML ``<Error>``)."""
    fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in extra.items())
    request_id = uuid.uuid4().hex[:16].upper()
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(code)}</Code><Message>{escape(message)}'
        f"</Message>{fields}<RequestId>{request_id}</RequestId><HostId>emulated</HostId></Error>"
    )
    return status, {"content-type": "application/xml", "x-amz-request-id": request_id}, body.encode()


def _kms_refusal(aws: Account, headers: Any) -> tuple[int, dict[str, str], bytes] | None:
    if str(headers.get("x-amz-server-side-encryption", "")).lower() != "aws:kms":
        return None
    key_id = headers.get("x-amz-server-side-encryption-aws-kms-key-id")
    if not key_id:
        return None  # the account's AWS managed key aws/s3, which always exists
    from moto.kms.models import kms_backends

    backend = kms_backends[aws.account][aws.region]
    arn_region = re.match(r"^arn:aws[a-z-]*:kms:([a-z0-9-]+):", key_id)
    if arn_region and arn_region.group(1) != aws.region:
        return _error("KMS.NotFoundException", f"Invalid arn {arn_region.group(1)}", 400)
    try:
        resolved = backend.get_key_id(key_id)
        if resolved.startswith("alias/") or ":alias/" in resolved:
            resolved = backend.get_key_id_from_alias(resolved.split(":", 5)[-1]) or ""
        key = backend.keys.get(resolved)
    except Exception:  # noqa: BLE001 - moto's lookups raise its own NotFound for unknown aliases
        key = None
    if key is None:
        return _error("KMS.NotFoundException", f"Key '{key_id}' does not exist", 400)
    if not key.enabled:
        return _error("KMS.DisabledException", f"{key.arn} is disabled.", 400)
    return None


def _refusal(
    aws: Account, operation: str, bucket: str, query: dict[str, list[str]], headers: Any, body: Any
) -> tuple[int, dict[str, str], bytes] | None:
    rules = _RULES.get(aws)
    if rules is not None and bucket in rules.denied:
        ops = rules.denied[bucket]
        if ops is None or operation in ops:
            return _error("AccessDenied", "Access Denied", 403)
    if operation in ("UploadPart", "UploadPartCopy"):
        number = (query.get("partNumber") or [""])[0]
        if not number.isdigit() or not 1 <= int(number) <= MAX_PART_NUMBER:
            return _error(
                "InvalidArgument",
                f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive",
                400,
                ArgumentName="partNumber",
                ArgumentValue=number,
            )
    if operation == "DeleteObjects":
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        if text.count("<Object>") > MAX_DELETE_KEYS:
            return _error(
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our published schema",
                400,
            )
    if operation in ("CreateMultipartUpload", "PutObject", "CopyObject"):
        return _kms_refusal(aws, headers)
    return None


def _params(operation: str, bucket: str, key: str, query: dict[str, list[str]]) -> dict[str, Any]:
    params: dict[str, Any] = {"Bucket": bucket}
    if key:
        params["Key"] = key
    for name, param in (("partNumber", "PartNumber"), ("uploadId", "UploadId"), ("prefix", "Prefix")):
        if name in query:
            params[param] = query[name][0]
    if "max-keys" in query:
        params["MaxKeys"] = query["max-keys"][0]
    return params


def _wrap(level: str) -> Callable[..., Any]:
    original = _ORIGINAL[level]

    def handler(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        aws = state.running()
        if aws is None:
            return original(self, request, full_url, headers)
        query = parse_qs(urlparse(full_url).query, keep_blank_values=True)
        operation = operation_name(level, request.method, query, request.headers)
        bucket, key = _where(request, full_url)
        call = CallRecord(
            index=-1, time=aws.clock.now(), service="s3", operation=operation,
            params=_params(operation, bucket, key, query),
        )  # fmt: skip
        try:
            injected = aws.faults.admit("s3", operation)
            if injected is not None:
                call.injected = True
                status = injected.status or 400
                answer = _error(injected.code, injected.message, status)
            else:
                body = getattr(request, "body", None) if operation == "DeleteObjects" else None
                if operation == "DeleteObjects" and body is None and hasattr(request, "get_data"):
                    body = request.get_data()
                refused = _refusal(aws, operation, bucket, query, request.headers, body)
                if refused is not None:
                    call.injected = True
                    answer = refused
                else:
                    with aws.lock:  # one call at a time, as faults' wrapper serves the other services
                        answer = original(self, request, full_url, headers)
        except BaseException as exc:
            call.error, call.message = type(exc).__name__, str(exc)
            aws.faults.record(call)
            raise
        status, _, out = answer
        call.status = int(status)
        if call.status >= 400:
            text = out.decode("utf-8", "replace") if isinstance(out, bytes) else str(out)
            code = re.search(r"<Code>([^<]*)</Code>", text)
            message = re.search(r"<Message>([^<]*)</Message>", text)
            call.error = code.group(1) if code else str(status)
            call.message = message.group(1) if message else None
        call.duration = aws.clock.now() - call.time
        aws.faults.record(call)
        return answer

    return handler


def install() -> None:
    """Wrap moto's S3 entry points once per process (plain moto while no ``LocalAWS`` runs)."""
    if _ORIGINAL:
        return
    from moto.s3.responses import S3Response

    _ORIGINAL["bucket"] = S3Response.bucket_response
    _ORIGINAL["key"] = S3Response.key_response
    S3Response.bucket_response = _wrap("bucket")  # type: ignore[method-assign]
    S3Response.key_response = _wrap("key")  # type: ignore[method-assign]
