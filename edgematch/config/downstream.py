"""The settings of quarantine, reports and review: the concern "Quarantine and reports".

Declared here as :class:`Settings`' first fields (a dataclass base of it), each once with
its variable, default, parser, unit and help, like the others in ``settings.py``; the
reader and the reference in ``docs/configuration.md`` take them from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edgematch.config import parsers as p
from edgematch.config.declare import DAY_S, Concern, secret_setting, setting
from edgematch.config.secret import Secret

__all__ = ["DownstreamSettings"]

DOWNSTREAM: Final = Concern.DOWNSTREAM


@dataclass(frozen=True)
class DownstreamSettings:
    """What the quarantine, the reporters and review are configured with."""

    # fmt: off
    # Laid out as in settings.py; in the order the reference lists them.
    quarantine_mode: str | None = setting(
        None, DOWNSTREAM, p.quarantine_mode,
        default_doc="`move` with a quarantine bucket, else `tag`",
        help="`move`, `tag` or `off` (shadow): "
        "[what each does](quarantine-and-reports.md)")
    quarantine_bucket: str | None = setting(
        None, DOWNSTREAM, p.bucket_name,
        help="where `move` copies matched content (create it with Object Lock)")
    evidence_retention_days: int = setting(
        365, DOWNSTREAM, p.retention_days, unit="days",
        help="Object Lock retention of a quarantined copy, besides its legal hold (`0`: legal "
        "hold only)")
    reports_bucket: str | None = setting(
        None, DOWNSTREAM, p.bucket_name,
        default_doc="required to report ([without it](#without-a-reports-bucket))",
        help="where report documents are written, under `reports/`")
    reports_kms_key_id: str | None = setting(
        None, DOWNSTREAM, p.non_empty,
        help="encrypt reports and the verdict log with this KMS key (`aws:kms`) instead of "
        "`AES256`")
    reporter: str = setting(
        "record", DOWNSTREAM, p.reporter,
        help="`record`, `webhook` or `photodna`: "
        "[what each does](quarantine-and-reports.md)")
    report_webhook_url: str | None = setting(
        None, DOWNSTREAM, p.webhook_url, default_doc="required for `webhook`",
        help="the webhook's URL (`https://`; `http://` only to localhost)")
    report_webhook_secret: Secret | None = secret_setting(  # noqa: RUF009 (a field)
        DOWNSTREAM, help="the HMAC-SHA256 key of the signature header",
        default_doc="required for `webhook`")
    report_user: Secret | None = secret_setting(  # noqa: RUF009 (a field)
        DOWNSTREAM, help="the `x-usr` reporting credential", default_doc="required for `photodna`")
    report_password: Secret | None = secret_setting(  # noqa: RUF009 (a field)
        DOWNSTREAM, help="the `x-pwd` reporting credential", default_doc="required for `photodna`")
    report_org_name: str | None = setting(
        None, DOWNSTREAM, p.non_empty, default_doc="required for `photodna`",
        help="`OrgName` of a PhotoDNA report")
    report_reporter_name: str | None = setting(
        None, DOWNSTREAM, p.non_empty, default_doc="required for `photodna`",
        help="`ReporterName` of a PhotoDNA report")
    report_test: bool = setting(
        False, DOWNSTREAM, p.boolean, help="send PhotoDNA reports with `IsTest`")
    review: str = setting(
        "auto", DOWNSTREAM, p.review,
        default_doc="`auto`: `required` with the `webhook` or `photodna` reporter, `off` with "
        "`record`",
        help="`required`: a report waits in `pending_review` until a person confirms it "
        "(`edgematch review confirm`); `off`: it is submitted at once; `auto`: by reporter "
        "([why review by default](quarantine-and-reports.md#review-before-a-report))")
    review_link_s: int = setting(
        900, DOWNSTREAM, p.review_link_s, unit="s",
        help="how long the pre-signed link to a quarantined copy that `edgematch review show` "
        "issues stays valid (1 to 3600)")
    flood_matches: int = setting(
        50, DOWNSTREAM, p.positive_int, unit="objects",
        help="distinct content objects one match id may match within "
        "`EDGEMATCH_FLOOD_WINDOW_S`; the reports of its further matches are held for review "
        "([the flood guard](quarantine-and-reports.md#the-flood-guard))")
    flood_window_s: int = setting(
        DAY_S, DOWNSTREAM, p.positive_int, unit="s",
        help="the sliding window of the flood guard")
    # fmt: on
