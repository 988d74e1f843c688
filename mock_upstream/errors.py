"""Error texts (verbatim from the documents, defined once) and each provider's error shape.

task/pic:  HTTP 4xx/5xx with `{"status": <same code>, "message": "..."}`.
HD redraw: HTTP 200 with `{"err_code": 1, "err_msg": "..."}`.
Tencent:   HTTP 200 with `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`.
Result files: an OSS-style XML error, like the object stores the real providers link to.
"""

from __future__ import annotations

from typing import Final, Literal

from starlette.responses import JSONResponse, Response

Provider = Literal["taskpic", "hd", "tencent", "files", "control"]

# ---- HD redraw (document 004), verbatim --------------------------------------------------
HD_NO_ACCOUNT: Final = "账户不存在"
HD_NO_BALANCE: Final = "账户剩余次数不足"
HD_FILE_TOO_LARGE: Final = "文件大小不能超过16MB"
HD_TASK_UNKNOWN: Final = "任务未找到或状态未知"


def hd_expand_error(field: str) -> str:
    return f"扩展参数错误:{field}必须在0.0-0.3之间"


def hd_submit_failed(detail: str) -> str:
    return f"任务提交失败:{detail}"


# ---- task/pic (documents 000-002 give no error texts; these are the mock's) --------------
TASKPIC_BAD_TOKEN: Final = "invalid token"  # noqa: S105 - an error text
TASKPIC_NO_BALANCE: Final = "insufficient balance"
TASKPIC_TASK_UNKNOWN: Final = "task not found"
TASKPIC_RATE_LIMITED: Final = "too many requests"

# Failed task states (negative `state`) and their `err_info`.
TASKPIC_FAILURES: Final[dict[int, str]] = {
    -1: "task failed",
    -2: "result upload failed",
    -3: "source image download failed",
    -5: "image exceeds 15 MB",
    -7: "invalid image",
    -8: "processing timeout",
}

# ---- Tencent (document 003 plus the common error codes) ----------------------------------
TENCENT_MESSAGES: Final[dict[str, str]] = {
    "AuthFailure.InvalidAuthorization": "请求头部的 Authorization 不符合腾讯云标准。",
    "AuthFailure.SecretIdNotFound": (
        "密钥不存在。请在控制台检查密钥是否已被删除或者禁用,如状态正常,请检查密钥是否填写正确,注意前后不得有空格。"
    ),
    "AuthFailure.SignatureExpire": (
        "签名过期。Timestamp 和服务器时间相差不得超过五分钟,请检查本地时间是否和标准时间同步。"
    ),
    "AuthFailure.SignatureFailure": "签名错误。签名计算错误,请对照调用方式中的签名方法文档检查签名计算过程。",
    "AuthFailure.UnauthorizedOperation": "无权执行该操作,请检查您的CAM策略,确保您拥有对应的CAM权限。",
    "InvalidAction": "接口不存在。",
    "NoSuchVersion": "接口版本不存在。",
    "MissingParameter": "缺少参数错误。",
    "UnknownParameter": "未知参数错误,用户多传未定义的参数会导致错误。",
    "InvalidParameter": "参数错误(包括参数格式、类型等错误)。",
    "UnsupportedRegion": "接口不支持所传地域。",
    "UnsupportedProtocol": "HTTP(S)请求协议错误,只支持 GET 和 POST 请求。",
    "RequestLimitExceeded": "请求的次数超过了频率限制。",
    "InternalError": "内部错误。",
    "FailedOperation.GenerateImageFailed": "生成图片审核不通过,请重试。",
    "FailedOperation.ImageDecodeFailed": "图片解码失败。",
    "FailedOperation.ImageDownloadError": "图片下载错误。",
    "FailedOperation.ImageResolutionExceed": "图片分辨率过大,超过2000*2000。",
    "FailedOperation.ImageSizeExceed": "base64编码后的图片数据大小不超过10M。",
    "FailedOperation.InnerError": "服务内部错误,请稍后重试。",
    "FailedOperation.RequestEntityTooLarge": "整个请求体太大(通常主要是图片)。",
    "FailedOperation.RequestTimeout": "后端服务超时。",
    "FailedOperation.RpcFail": "RPC请求失败,一般为算法微服务故障。",
    "FailedOperation.ServerError": "服务内部错误。",
    "FailedOperation.Unknown": "未知错误。",
    "InvalidParameter.InvalidParameter": "参数不合法。",
    "InvalidParameterValue.ImageEmpty": "图片为空。",
    "InvalidParameterValue.ParameterValueError": "参数字段或者值有误",
    "InvalidParameterValue.StyleConflict": "1xx和其他风格不可混合使用。",
    "InvalidParameterValue.TextLengthExceed": "输入文本过长,请更换短一点的文本后重试。",
    "InvalidParameterValue.UrlIllegal": "URL格式不合法。",
    "OperationDenied.ImageIllegalDetected": "图片包含违法违规信息,审核不通过。",
    "OperationDenied.TextIllegalDetected": "文本包含违法违规信息,审核不通过。",
    "RequestLimitExceeded.JobNumExceed": "同时处理的任务数过多,请稍后重试。",
    "ResourceUnavailable.Delivering": "资源正在发货中。",
    "ResourceUnavailable.InArrears": "账号已欠费。",
    "ResourceUnavailable.LowBalance": "余额不足。",
    "ResourceUnavailable.NotExist": "计费状态未知,请确认是否已在控制台开通服务。",
    "ResourceUnavailable.StopUsing": "账号已停服。",
    "ResourcesSoldOut.ChargeStatusException": "计费状态异常。",
}


class TencentError(Exception):
    """A Tencent API error; `detail` refines the code's standard message."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = detail or TENCENT_MESSAGES.get(code, code)


def taskpic_error(status: int, message: str) -> JSONResponse:
    http = status if 400 <= status <= 599 else 400
    return JSONResponse({"status": status, "message": message}, status_code=http)


def hd_error(message: str, http: int = 200) -> JSONResponse:
    return JSONResponse({"err_code": 1, "err_msg": message}, status_code=http)


def tencent_error(code: str, message: str | None, request_id: str, http: int = 200) -> JSONResponse:
    body = {"Error": {"Code": code, "Message": message or TENCENT_MESSAGES.get(code, code)}}
    return JSONResponse({"Response": {**body, "RequestId": request_id}}, status_code=http)


def file_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status_code=status, media_type="application/xml")


def control_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def provider_error(
    provider: Provider, *, http: int, code: int | str | None, message: str | None, request_id: str
) -> Response:
    """An error in `provider`'s own shape, for injected faults."""
    match provider:
        case "taskpic":
            status = code if isinstance(code, int) else http
            fallback = TASKPIC_RATE_LIMITED if status == 429 else "injected fault"
            return taskpic_error(status, message or fallback)
        case "hd":
            return hd_error(message or hd_submit_failed(str(code or "服务繁忙")), http)
        case "tencent":
            default = "RequestLimitExceeded" if http == 429 else "InternalError"
            return tencent_error(str(code or default), message, request_id, http)
        case "files":
            names = {403: "AccessDenied", 404: "NoSuchKey"}
            return file_error(
                http, str(code or names.get(http, "InternalError")), message or "injected fault"
            )
        case _:
            return control_error(http, message or "injected fault")
