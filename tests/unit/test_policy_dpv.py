"""The DPV 2.x JSON-LD export parses as RDF and carries every retention rule."""

from __future__ import annotations

import json
import warnings

import pytest
from rdflib import RDF, RDFS, Graph, Literal, Namespace, URIRef

from policies.document import PolicyDocument
from policies.dpv import to_jsonld
from policies.loader import parse_policy, registry_dir

DPV = Namespace("https://w3id.org/dpv#")
PD = Namespace("https://w3id.org/dpv/pd#")
DCT = Namespace("http://purl.org/dc/terms/")
LETHE = Namespace("https://lethe.dev/ns/policy#")
XSD_DURATION = URIRef("http://www.w3.org/2001/XMLSchema#duration")
RECORD = URIRef("urn:lethe:policy:DPR-EC-01488")


@pytest.fixture(scope="module")
def doc() -> PolicyDocument:
    path = registry_dir() / "DPR-EC-01488.yaml"
    return parse_policy(path.read_text(), source=path.name).document


@pytest.fixture(scope="module")
def graph(doc: PolicyDocument) -> Graph:
    body = to_jsonld(doc, version=2, content_hash="ab" * 32)
    g = Graph()
    # inline @context: rdflib resolves nothing over the network. rdflib's own JSON-LD parser
    # builds a ConjunctiveGraph internally and warns about it; that is not ours to fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ConjunctiveGraph is deprecated", DeprecationWarning)
        g.parse(data=json.dumps(body), format="json-ld")
    return g


def test_the_record_is_a_dpv_process_pinned_to_dpv_2(graph: Graph) -> None:
    assert (RECORD, RDF.type, DPV.Process) in graph
    assert (RECORD, DCT.conformsTo, URIRef("https://w3id.org/dpv/2.0")) in graph
    assert (RECORD, DCT.identifier, Literal("DPR-EC-01488")) in graph


def test_each_retention_rule_is_a_storage_duration(graph: Graph, doc: PolicyDocument) -> None:
    conditions = set(graph.objects(RECORD, DPV.hasStorageCondition))
    assert len(conditions) == len(doc.rules)
    for rule in doc.rules:
        node = URIRef(f"urn:lethe:policy:DPR-EC-01488#rule/{rule.id}")
        assert node in conditions, rule.id
        assert (node, RDF.type, DPV.StorageDuration) in graph
        duration = graph.value(node, DPV.hasDuration)
        assert duration == Literal(rule.offset.isoformat(), datatype=XSD_DURATION)


def test_legal_basis_purposes_recipients_and_personal_data(graph: Graph) -> None:
    bases = set(graph.objects(RECORD, DPV.hasLegalBasis))
    assert URIRef("urn:lethe:policy:DPR-EC-01488#legal-basis/eudpr_5_1_a") in bases
    assert any((b, RDF.type, DPV.PublicInterest) in graph for b in bases)
    assert len(set(graph.objects(RECORD, DPV.hasPurpose))) == 4
    assert len(set(graph.objects(RECORD, DPV.hasRecipient))) == 3
    data = set(graph.objects(RECORD, DPV.hasPersonalData))
    health = URIRef("urn:lethe:policy:DPR-EC-01488#data/special_needs_health")
    assert health in data
    assert (health, RDF.type, DPV.SpecialCategoryPersonalData) in graph
    identity = URIRef("urn:lethe:policy:DPR-EC-01488#data/identity")
    assert (identity, URIRef("http://www.w3.org/2000/01/rdf-schema#subClassOf"), PD.Name) in graph


def test_handover_rules_point_at_the_other_record(graph: Graph) -> None:
    node = URIRef("urn:lethe:policy:DPR-EC-01488#rule/invited-or-selected-candidates")
    assert (node, DCT.references, URIRef("urn:lethe:policy:DPR-02054")) in graph


def test_eusurvey_and_europa_analytics_are_not_exported_as_processors(graph: Graph) -> None:
    # They are the Commission's own services: a processor acts on the controller's behalf.
    assert list(graph.objects(RECORD, DPV.hasDataProcessor)) == []
    assert list(graph.subjects(RDF.type, DPV.DataProcessor)) == []
    services = set(graph.objects(RECORD, LETHE.usesService))
    labels = {str(graph.value(s, RDFS.label)) for s in services}
    assert labels == {"EUSurvey", "Europa Analytics"}
    for node in services:
        assert (node, RDF.type, LETHE.ControllerService) in graph
        assert graph.value(node, LETHE.operatedBy) == Literal("European Commission")


def test_the_special_category_has_no_invented_ground_and_says_so(graph: Graph) -> None:
    health = URIRef("urn:lethe:policy:DPR-EC-01488#data/special_needs_health")
    assert graph.value(health, LETHE.specialCategoryGround) is None
    assert graph.value(health, LETHE.specialCategoryGroundStatus) == Literal("unstated")
    assert not any("10(2)" in str(label) for label in graph.objects(None, RDFS.label))
    flags = {str(f) for f in graph.objects(RECORD, LETHE.dpoFlag)}
    assert flags == {"special_category_ground_unstated: data_categories.special_needs_health"}
