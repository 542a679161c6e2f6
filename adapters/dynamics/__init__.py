"""Microsoft Dynamics 365 / Dataverse Web API: the ``$batch`` codec and a faithful simulator."""

from __future__ import annotations
