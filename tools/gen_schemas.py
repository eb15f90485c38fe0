"""Write schemas/<Entity>.avsc from the compact field tables below.

The .avsc files are the declarations the product reads (an entity is one file in schemas/);
this script only saves typing when the vendor page's field lists change. Each field carries a
``dc_kind`` attribute: how DataConnect spells the value in JSON (the simulator emits it, the
mapper parses it). Avro ignores unknown attributes.

Run: python tools/gen_schemas.py
"""

from __future__ import annotations

import json
from pathlib import Path

# kind -> Avro value type (always wrapped as ["null", T] with default null)
AVRO: dict[str, object] = {
    "guid": {"type": "string", "logicalType": "uuid"},
    "int": "long",
    "string": "string",
    "phone": "string",  # JSON number or string on the wire; a phone number is text
    "postal": "string",  # JSON number 0 on the vendor page; postal codes are text
    "money": {"type": "bytes", "logicalType": "decimal", "precision": 19, "scale": 4},
    "bool": "boolean",
    "flag": "boolean",  # shown as "" on the vendor page: a nullable boolean
    "timestamp": {"type": "long", "logicalType": "timestamp-millis"},
}

S = "string"
# Field tables read best as compact rows.
# fmt: off
ENTITIES: dict[str, dict[str, object]] = {
    "Customers": {
        "key": "CustomerID",
        "location_filter": True,
        "fields": [
            ("CustomerID", "guid"), ("LegacyCustomerID", "int"), ("FirstName", S), ("LastName", S),
            ("Address", S), ("Address2", S), ("City", S), ("Region", S), ("ZipPostal", S),
            ("URL", S), ("SalesPersonEmployeeID", "int"), ("Title", S), ("Country", S),
            ("Notes", S), ("VIP_customer", "int"), ("DefaultPhone", S), ("WorkPhoneNumber", S),
            ("HomePhoneNumber", S), ("FaxNumber", S), ("OtherPhone", S), ("Email", S),
            ("EmailCRMID", S), ("EmailCRMTypeID", "int"), ("MainPhone", S), ("Pager", S),
            ("CellPhone", S), ("CustomerType", S), ("AssignedToEmployeeID", "int"),
            ("DoNotEmail", "flag"), ("DeclineToProvideEmail", "flag"),
            ("DoNotPostOfficeMail", "flag"), ("DoNotCall", "flag"),
            ("DateOfLastMarketingCampaign", "timestamp"), ("ContactType", S),
            ("IndustryType", S), ("PositionType", S), ("SpecialIdentifier", S),
            ("CompanySize", S), ("MultiLevelPrice", S), ("AcceptCheques", "flag"),
            ("EmailSetDate", "timestamp"), ("EmailSetEmployeeID", "int"), ("MemberNumber", S),
            ("StoreLocationID", "int"), ("EmailSetStoreLocationID", "int"),
            ("DisplayNotesOnCustomerProfileStartUp", "flag"), ("CompanyContact", S),
            ("AppleDEP", S), ("Customer_Name", S),
        ],
    },
    "AccountsReceivable": {
        "key": "AccountsReceivableID",
        "location_filter": True,
        "fields": [
            ("AccountsReceivableID", "int"), ("AccountsReceivableIDByStore", S),
            ("EmployeeID", "int"), ("CustomerID", "guid"), ("LocationID", "int"),
            ("BillingCompany", S), ("BillingName", S), ("BillingAddress", S),
            ("BillingCity", S), ("BillingProvinceOrState", S), ("BillingCountry", S),
            ("BillingPostalOrZipCode", "postal"), ("CreditLimit", "money"),
            ("PORequired", "bool"), ("Balance", "money"), ("Comments", S),
            ("GLAccountID", "int"), ("Enabled", "bool"), ("DisplayCommentsOnStatement", "bool"),
            ("DoNotMail", "bool"), ("BillingPhoneNumber", S),
        ],
    },
    "Activities": {
        "key": "ActivityID",
        "location_filter": True,
        "params": {"LanguageCode": "en-us"},
        "fields": [
            ("ActivityID", "int"), ("ActivityType", S), ("LocationID", "int"),
            ("EmployeeID", "int"), ("AssignedToEmployeeID", "int"), ("ContactName", S),
            ("ContactNumber", "phone"), ("Description", S), ("DescriptionID", "int"),
            ("Details", S), ("Priority", S), ("DateCreated", "timestamp"),
            ("DateClosed", "timestamp"), ("Status", S), ("CustomerID", "guid"),
            ("KeepUpdatedOnActivityList", "bool"), ("PickedUpByCustomerID", "guid"),
            ("DiscussionID", "int"),
        ],
    },
    "Discussions": {
        "key": "DiscussionID",
        "location_filter": False,
        "fields": [
            ("DiscussionID", "int"), ("RootDiscussionID", "int"), ("DiscussionText", S),
            ("EmployeeID", "int"),
        ],
    },
    "FollowUps": {
        "key": "FollowUpID",
        "location_filter": True,
        "fields": [
            ("FollowUpID", "int"), ("AssignedToID", "int"), ("LocationID", "int"),
            ("DateFollowUp", "timestamp"), ("Abstract", S), ("FollowUpDescription", S),
            ("Completed", "bool"), ("Archived", "bool"),
        ],
    },
}
# fmt: on


def source_record() -> dict[str, object]:
    ts = {"type": "long", "logicalType": "timestamp-millis"}
    return {
        "type": "record",
        "name": "Source",
        "namespace": "dataconnect",
        "doc": "Where and when this row version came from.",
        "fields": [
            {"name": "connector", "type": "string", "doc": "Always 'dataconnect-publisher'."},
            {"name": "version", "type": "string", "doc": "Publisher version."},
            {"name": "source", "type": "string", "doc": "Configured DataConnect source name."},
            {"name": "entity", "type": "string"},
            {"name": "row_thumbprint", "type": "string", "doc": "RowThumbprint: this version."},
            {"name": "row_inserted", "type": ["null", ts], "default": None},
            {"name": "row_updated", "type": ["null", ts], "default": None},
            {"name": "row_event", "type": "string", "doc": "RowEvent exactly as received."},
            {"name": "window_start", "type": ts, "doc": "StartDate of the poll window."},
            {"name": "window_stop", "type": ts, "doc": "StopDate of the poll window."},
        ],
    }


def envelope(entity: str, spec: dict[str, object]) -> dict[str, object]:
    fields = [
        {"name": name, "type": ["null", AVRO[kind]], "default": None, "dc_kind": kind}
        for name, kind in spec["fields"]  # type: ignore[attr-defined]
    ]
    fields.append(
        {
            "name": "_extra",
            "type": {"type": "map", "values": "string"},
            "default": {},
            "doc": "Fields the schema does not know yet: name -> raw JSON value. Never dropped.",
        }
    )
    value = {
        "type": "record",
        "name": "Value",
        "namespace": f"dataconnect.{entity}",
        "doc": f"One {entity} row as DataConnect returns it, typed.",
        "fields": fields,
    }
    decl: dict[str, object] = {"key": spec["key"], "location_filter": spec["location_filter"]}
    if "params" in spec:
        decl["params"] = spec["params"]
    return {
        "type": "record",
        "name": "Envelope",
        "namespace": f"dataconnect.{entity}",
        "doc": f"Change event for one {entity} row version (Debezium-style envelope).",
        "dataconnect": {"entity": entity, **decl},
        "fields": [
            {"name": "before", "type": ["null", value], "default": None},
            {"name": "after", "type": ["null", f"dataconnect.{entity}.Value"], "default": None},
            {"name": "source", "type": source_record()},
            {"name": "op", "type": "string", "doc": "c = Added, u = Updated, d = Deleted."},
            {"name": "ts_ms", "type": "long", "doc": "When the publisher built the event."},
        ],
    }


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "schemas"
    out.mkdir(exist_ok=True)
    for entity, spec in ENTITIES.items():
        text = json.dumps(envelope(entity, spec), indent=2) + "\n"
        (out / f"{entity}.avsc").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
