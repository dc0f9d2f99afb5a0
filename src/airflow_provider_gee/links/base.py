"""The base of the provider's extra links (the EE task, the Drive folder, the asset).

Airflow 3 shows a link from the XCom under the link's ``xcom_key``, which the task runner writes
after every run of a task, deferral included (``finalize`` calls ``get_link`` for each link). So an
operator only tells its links their URLs (``persist``) before deferring; ``get_link`` answers from
the operator without asking the api-server, and links the operator did not set in this process
(a resumed half) are read back once from XCom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

#: attribute of the operator instance holding the URLs set in this process, by link key
_URLS = "_gee_link_urls"


class UrlLink(BaseOperatorLink):
    """A link whose whole URL the operator knows at run time; ``""`` hides the link."""

    name: ClassVar[str]
    key: ClassVar[str]

    @property
    def xcom_key(self) -> str:
        return self.key

    @classmethod
    def persist(cls, context: Context, url: str | None) -> None:
        """Set this link's URL for the running task (``None``: the link does not apply)."""
        # Not pushed here: the task runner pushes every link's get_link() right after this run,
        # also when it defers, so a push of our own would be a second request with the same value.
        task = context["task"]
        urls = task.__dict__.setdefault(_URLS, {})
        urls[cls.key] = url or ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        urls = getattr(operator, _URLS, None) or {}
        if self.key in urls:
            return urls[self.key]
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(key=self.key, ti_key=ti_key)
        return value if isinstance(value, str) else ""
