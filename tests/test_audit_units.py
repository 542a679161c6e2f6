"""The audit's pure parts: walking a company hierarchy for loops, reading a picklist
value as the destination spells it, and keeping a finding's record list bounded while
its count stays exact."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.base import Column
from service.audit_destination import picked
from service.audit_findings import AuditReport, Findings, RecordRef, acknowledge
from service.audit_queries import cycles
from service.audit_source import parses


def test_a_loop_is_named_once_by_its_members_and_a_chain_into_it_is_not_part_of_it() -> None:
    parents = {"b": "c", "c": "a", "a": "b", "tail": "a", "x": "x", "root_child": "root"}
    assert cycles(parents) == [["a", "b", "c"], ["x"]]


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.sampled_from("abcdefghij")))
def test_every_member_of_every_loop_leads_back_to_itself(parents: dict[str, str]) -> None:
    found = cycles(parents)
    members = [m for loop in found for m in loop]
    assert len(members) == len(set(members))
    for loop in found:
        for i, member in enumerate(loop):
            assert parents[member] == loop[(i + 1) % len(loop)]
    for start in set(parents) - set(members):
        seen: set[str] = set()
        node = parents[start]
        while node in parents and node not in seen and node != start:
            seen.add(node)
            node = parents[node]
        assert node != start, f"{start} is on a loop the audit missed"


def test_multi_select_values_are_read_in_each_platforms_spelling() -> None:
    salesforce = Column("multipicklist", choices=("email", "phone"))
    dataverse = Column("multipicklist", choices=("100000000", "100000001"))
    assert picked(["email", "fax"], salesforce) == ["email", "fax"]
    assert picked("email;fax", salesforce) == ["email", "fax"]
    assert picked("100000000,100000009", dataverse) == ["100000000", "100000009"]
    assert picked(100000001, Column("picklist", choices=("100000001",))) == ["100000001"]


def test_a_finding_lists_a_bounded_number_of_records_and_counts_them_all() -> None:
    findings = Findings(keep=3)
    for i in range(10):
        findings.add("f", "k", "warning", "t", "e", RecordRef("contacts", f"ct_{i}"))
    [finding] = findings.sorted()
    assert finding.count == 10
    assert [r.source_id for r in finding.records] == ["ct_0", "ct_1", "ct_2"]


def test_only_an_unacknowledged_blocking_finding_blocks() -> None:
    findings = Findings()
    findings.add("a", "k", "blocking", "t", "e")
    findings.add("b", "k", "blocking", "t", "e")
    findings.add("c", "k", "warning", "t", "e")
    report = AuditReport("r", "salesforce", {}, findings.sorted(), ("a", "gone"))
    acknowledge(report.findings, report.acknowledged)
    assert [f.id for f in report.blocking] == ["b"]
    assert report.stale_acknowledgements == ["gone"]


def test_custom_values_are_judged_by_their_declared_type() -> None:
    assert parses("number", "42", ())
    assert not parses("number", "n/a", ())
    assert not parses("currency", "$12,500 USD", ())
    assert parses("currency", "12500.00", ())
    assert not parses("date", "31/02/2024", ())
    assert not parses("datetime", "next Tuesday 5pm", ())
    assert not parses("boolean", "maybe", ())
    assert parses("picklist", "a", ("a", "b"))
    assert not parses("multi_picklist", ["Not an option"], ("a",))
    assert not parses("computed", "#DIV/0!", ())
    assert parses("text", "anything", ())
