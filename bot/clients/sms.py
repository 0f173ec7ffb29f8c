"""SMS: one interface (`SmsProvider.send`), one adapter per provider, chosen by SMS_PROVIDER.

- `tencentcloud`: Tencent Cloud SMS (SendSms, API 2021-01-11) through its official Python SDK
  (`tencentcloud-sdk-python-sms`), which signs every request with TC3-HMAC-SHA256. SMS_API_BASE
  points the SDK at another endpoint (the emulator's, in the demo and tests); empty: the real
  sms.tencentcloudapi.com.
- `emulator`: a plain JSON POST to the emulator's `/_emulator/sms`, which records it.

Both send a template id and its parameters (SMS providers take no free text) to one number;
a number appears in log lines masked (138****5678).
"""
from __future__ import annotations

import logging
from typing import Protocol
from urllib.parse import urlsplit

import requests

from core.config import Config
from core.crypto import mask_phone

log = logging.getLogger("huzhu.sms")


class SmsError(Exception):
    """The provider refused or failed: `code` is its error code (no personal data)."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


class SmsProvider(Protocol):
    def send(self, phone: str, template_id: str, params: list[str]) -> str:
        """Send one message; returns the provider's serial number. Raises SmsError."""


def _e164(phone: str) -> str:
    phone = phone.strip().replace(" ", "").replace("-", "")
    return phone if phone.startswith("+") else f"+86{phone}"


class TencentCloudSms:
    def __init__(self, cfg: Config, timeout: int = 10):
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import sms_client

        http = HttpProfile(reqTimeout=timeout)
        base = (cfg.values.get("SMS_API_BASE") or "").strip()
        if base:
            parts = urlsplit(base)
            http.endpoint = parts.netloc
            http.protocol = http.scheme = parts.scheme or "https"
        profile = ClientProfile(signMethod="TC3-HMAC-SHA256", httpProfile=http)
        cred = credential.Credential(cfg.SMS_SECRET_ID, cfg.SMS_SECRET_KEY)
        self.client = sms_client.SmsClient(cred, cfg.values.get("SMS_REGION") or "ap-guangzhou",
                                           profile)
        self.app_id, self.sign = cfg.SMS_APP_ID, cfg.SMS_SIGN

    def send(self, phone: str, template_id: str, params: list[str]) -> str:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException)
        from tencentcloud.sms.v20210111 import models

        req = models.SendSmsRequest()
        req.PhoneNumberSet = [_e164(phone)]
        req.SmsSdkAppId = self.app_id
        req.SignName = self.sign
        req.TemplateId = str(template_id)
        req.TemplateParamSet = [str(p) for p in params]
        try:
            resp = self.client.SendSms(req)
        except TencentCloudSDKException as exc:
            raise SmsError(str(exc.code or "ClientError"), str(exc.message or "")[:200]) from None
        status = (resp.SendStatusSet or [None])[0]
        if status is None:
            raise SmsError("NoStatus")
        if status.Code != "Ok":
            raise SmsError(str(status.Code), str(status.Message or "")[:200])
        log.info("sms sent to %s template=%s", mask_phone(phone), template_id)
        return str(status.SerialNo or "")


class EmulatorSms:
    def __init__(self, cfg: Config, timeout: float = 10.0):
        self.url = f"{(cfg.values.get('SMS_API_BASE') or '').rstrip('/')}/_emulator/sms"
        self.app_id, self.sign, self.timeout = cfg.SMS_APP_ID, cfg.SMS_SIGN, timeout

    def send(self, phone: str, template_id: str, params: list[str]) -> str:
        try:
            res = requests.post(self.url, timeout=self.timeout, json={
                "phone": _e164(phone), "app_id": self.app_id, "sign": self.sign,
                "template_id": str(template_id), "params": [str(p) for p in params]})
            body = res.json()
        except (requests.RequestException, ValueError) as exc:
            raise SmsError("NetworkError", type(exc).__name__) from None
        if body.get("code") != "Ok":
            raise SmsError(str(body.get("code") or res.status_code), str(body.get("message", "")))
        log.info("sms sent to %s template=%s", mask_phone(phone), template_id)
        return str(body.get("serial", ""))


def sms_provider(cfg: Config) -> SmsProvider | None:
    """The configured provider, or None when SMS_PROVIDER is empty."""
    name = cfg.values.get("SMS_PROVIDER") or ""
    if name == "tencentcloud":
        return TencentCloudSms(cfg)
    if name == "emulator":
        return EmulatorSms(cfg)
    return None
