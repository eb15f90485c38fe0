"""Realistic field values, spelled with the JSON types the vendor page shows per ``dc_kind``.

A *profile* is one plausible set of values for every non-key field of an entity (a person with
a matching email and address, store codes, invoice numbers ...). Profiles are generated once
per entity from the seed; row versions pick a profile, so values look real and rendering stays
cheap. Field-name rules give the realism; the ``dc_kind`` decides the JSON type, so a newly
declared entity gets sensible values with no code change.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from publisher.entities import FieldSpec
from publisher.simulator.ids import guid_from_bits
from publisher.simulator.timestamps import TimestampFormatter

JsonValue = str | int | float | bool

FIRST_NAMES = (
    "John",
    "Mary",
    "James",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Daniel",
    "Karen",
    "Matthew",
    "Nancy",
    "Anthony",
    "Lisa",
    "Mark",
    "Priya",
    "Wei",
    "Sofia",
    "Mateo",
    "Aisha",
    "Liam",
    "Olivia",
    "Noah",
    "Emma",
    "Lucas",
    "Chloé",
    "François",
    "Zoë",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Nguyen",
    "Patel",
    "Singh",
    "Chen",
    "Tremblay",
    "Gagnon",
    "Roy",
    "O'Brien",
    "Müller",
    "Kowalski",
    "Test",
)
COMPANIES = (
    "Kentel",
    "Northwind Traders",
    "Contoso Ltd",
    "Fabrikam Inc",
    "Acme Wireless",
    "Prairie Mobile",
    "Summit Cellular",
    "Blue Jay Communications",
    "Maple Leaf Telecom",
    "Riverbend Repairs",
    "Coastal Connect",
    "Urban Gadgets",
    "Pinecrest Holdings",
)
STREETS = (
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "2nd Ave SW",
    "Elm St",
    "Park Blvd",
    "Cedar Ln",
    "Macleod Trail SE",
    "Jasper Ave",
    "Yonge St",
    "Sunset Blvd",
    "Lakeshore Rd",
    "Hillcrest Way",
)
#: (city, region, country, postal code)
PLACES = (
    ("Calgary", "AB", "Canada", "T2P 1J9"),
    ("Edmonton", "AB", "Canada", "T5J 0N3"),
    ("Toronto", "ON", "Canada", "M5V 2T6"),
    ("Vancouver", "BC", "Canada", "V6B 1A1"),
    ("Regina", "SK", "Canada", "S4P 3Y2"),
    ("Montréal", "QC", "Canada", "H3B 2Y5"),
    ("Tallahassee", "FL", "USA", "32301"),
    ("Seattle", "WA", "USA", "98101"),
    ("Austin", "TX", "USA", "73301"),
    ("Denver", "CO", "USA", "80202"),
    ("Chicago", "IL", "USA", "60601"),
    ("Phoenix", "AZ", "USA", "85001"),
    ("Boston", "MA", "USA", "02108"),
    ("Atlanta", "GA", "USA", "30303"),
    ("Portland", "OR", "USA", "97201"),
    ("Nashville", "TN", "USA", "37201"),
)
CITIES = tuple(p[0] for p in PLACES)
_NOTES = (
    "Prefers text messages",
    "Called about trade-in value",
    "Screen protector installed",
    "Wants to upgrade next month",
    "Loyalty member since 2015",
    "Follow up on warranty claim",
    "Customer requested paper receipt",
    "Interested in tablet bundle",
    "",
)
_CODES = ("REF", "ID", "SN", "PO", "ACCT")
_ACTIVITY_TYPES = (
    "Sale Invoice",
    "Repair",
    "Customer Follow Up",
    "Refund",
    "Special Order",
    "Trade-In",
)


@dataclass(frozen=True, slots=True)
class Persona:
    """The correlated facts one profile's fields draw on."""

    first: str
    last: str
    company: str
    place: tuple[str, str, str, str]
    street: str
    store_ids: tuple[int, ...]
    store_codes: tuple[str, ...]
    times: tuple[int, int]  # [lo, hi) epoch ms for dates inside rows


ValueGenerator = Callable[[random.Random, Persona, TimestampFormatter], JsonValue]


def _maybe(rng: random.Random, p_empty: float, value: str) -> str:
    return "" if rng.random() < p_empty else value


def _phone_text(rng: random.Random) -> str:
    return f"({rng.randint(201, 989)}) 555-{rng.randint(0, 9999):04d}"


def _email(rng: random.Random, who: Persona) -> str:
    local = f"{who.first}.{who.last}".lower().replace("'", "").replace(" ", "")
    return f"{local}{rng.randint(1, 99)}@example.com"


def _timestamp(rng: random.Random, who: Persona, ts: TimestampFormatter) -> str:
    millis = rng.randrange(*who.times)
    if rng.random() < 0.3:  # dates entered by hand are often whole seconds
        millis -= millis % 1000
    return ts.format(millis, rng.randrange(100))


def _money(rng: random.Random) -> int | float:
    choice = rng.random()
    if choice < 0.3:
        return rng.choice((0, 500, 1000, 2500, 10000))
    if choice < 0.5:
        return rng.randint(1, 400) / 2  # 12.5 style
    return round(rng.uniform(0, 5000), 2)


_BY_NAME: dict[str, ValueGenerator] = {
    "FirstName": lambda r, w, t: _maybe(r, 0.1, w.first),
    "LastName": lambda r, w, t: _maybe(r, 0.1, w.last),
    "ContactName": lambda r, w, t: f"{w.first} {w.last}",
    "BillingName": lambda r, w, t: _maybe(r, 0.5, f"{w.first} {w.last}"),
    "Customer_Name": lambda r, w, t: w.company if r.random() < 0.2 else f"{w.first} {w.last}",
    "BillingCompany": lambda r, w, t: w.company,
    "CompanyContact": lambda r, w, t: _maybe(r, 0.8, f"{w.first} {w.last}"),
    "Address": lambda r, w, t: f"{r.randint(1, 9999)} {w.street}",
    "BillingAddress": lambda r, w, t: r.choice(("N/A", f"{r.randint(1, 9999)} {w.street}")),
    "Address2": lambda r, w, t: _maybe(r, 0.8, f"Suite {r.randint(100, 900)}"),
    "City": lambda r, w, t: w.place[0],
    "BillingCity": lambda r, w, t: w.place[0],
    "Region": lambda r, w, t: w.place[1],
    "BillingProvinceOrState": lambda r, w, t: w.place[1],
    "Country": lambda r, w, t: w.place[2],
    "BillingCountry": lambda r, w, t: "USA" if w.place[2] == "USA" else "Canada",
    "ZipPostal": lambda r, w, t: w.place[3],
    "URL": lambda r, w, t: _maybe(r, 0.85, f"https://www.{w.company.split()[0].lower()}.com"),
    "Title": lambda r, w, t: r.choice(("", "", "Mr.", "Ms.", "Mrs.", "Dr.")),
    "Email": lambda r, w, t: _maybe(r, 0.2, _email(r, w)),
    "EmailCRMID": lambda r, w, t: _maybe(r, 0.7, f"CRM-{r.randint(10000, 99999)}"),
    "CustomerType": lambda r, w, t: r.choice(("", "Individual", "Business", "Government")),
    "ContactType": lambda r, w, t: r.choice(("", "Primary", "Billing")),
    "IndustryType": lambda r, w, t: r.choice(("", "", "Retail", "Construction", "Healthcare")),
    "PositionType": lambda r, w, t: r.choice(("", "", "Owner", "Manager", "Buyer")),
    "CompanySize": lambda r, w, t: r.choice(("", "", "1-10", "11-50", "51-200")),
    "MultiLevelPrice": lambda r, w, t: r.choice(("", "", "Wholesale", "Employee")),
    "MemberNumber": lambda r, w, t: _maybe(r, 0.6, f"M{r.randint(0, 999999):06d}"),
    "AppleDEP": lambda r, w, t: _maybe(r, 0.9, str(r.randint(1000000, 9999999))),
    "AccountsReceivableIDByStore": lambda r, w, t: (
        f"{r.choice(w.store_codes)}AR{r.randint(1, 999)}"
    ),
    "ActivityType": lambda r, w, t: r.choice(_ACTIVITY_TYPES),
    "Description": lambda r, w, t: f"Invoice # {r.randint(10**10, 10**11 - 1)}",
    "Details": lambda r, w, t: (
        f"Date: {r.randint(1, 12)}/{r.randint(1, 28)}/20{r.randint(8, 24):02d} "
        f"{r.randint(1, 12)}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d} {r.choice('AP')}M"
    ),
    "Priority": lambda r, w, t: r.choice(("Low", "Low", "Medium", "High")),
    "Status": lambda r, w, t: r.choice(("Completed", "Completed", "Open", "In Progress")),
    "DescriptionID": lambda r, w, t: -1 if r.random() < 0.7 else r.randint(1, 50),
    "VIP_customer": lambda r, w, t: r.choice((0, 0, 0, 1, 41)),
    "EmailCRMTypeID": lambda r, w, t: r.randint(1, 40),
    "GLAccountID": lambda r, w, t: r.randint(1, 12),
    "DiscussionID": lambda r, w, t: r.randint(1, 5000),
    "RootDiscussionID": lambda r, w, t: r.randint(1, 5000),
    "DiscussionText": lambda r, w, t: _maybe(r, 0.3, r.choice(_NOTES)),
    "Notes": lambda r, w, t: _maybe(r, 0.6, r.choice(_NOTES)),
    "Comments": lambda r, w, t: _maybe(r, 0.6, r.choice(_NOTES)),
    "Abstract": lambda r, w, t: _maybe(r, 0.4, r.choice(("Call back", "Upgrade", "Repair ready"))),
    "FollowUpDescription": lambda r, w, t: _maybe(r, 0.4, r.choice(_NOTES)),
}

_INT_NAMES = frozenset(
    {
        "DescriptionID",
        "VIP_customer",
        "EmailCRMTypeID",
        "GLAccountID",
        "DiscussionID",
        "RootDiscussionID",
    }
)

#: (name pattern, the dc_kind it applies to, generator)
_BY_PATTERN: tuple[tuple[re.Pattern[str], str, ValueGenerator], ...] = (
    (re.compile(r"(Employee|AssignedTo)ID$"), "int", lambda r, w, t: r.randint(40000, 60000)),
    (re.compile(r"LocationID$"), "int", lambda r, w, t: r.choice(w.store_ids)),
    (re.compile(r"Phone|Fax|Pager"), "string", lambda r, w, t: _maybe(r, 0.7, _phone_text(r))),
)


def _by_kind(kind: str) -> ValueGenerator:
    if kind == "guid":
        return lambda r, w, t: guid_from_bits(r.getrandbits(128))
    if kind == "int":
        return lambda r, w, t: r.randint(1, 100_000)
    if kind == "phone":
        # ContactNumber is a JSON number on the page (5555555555: more than 32 bits)
        return lambda r, w, t: r.randint(201, 989) * 10_000_000 + 5_550_000 + r.randint(0, 9999)
    if kind == "postal":
        # The page shows the number 0; real postal codes are text
        return lambda r, w, t: 0 if r.random() < 0.4 else w.place[3]
    if kind == "money":
        return lambda r, w, t: _money(r)
    if kind == "bool":
        return lambda r, w, t: r.random() < 0.5
    if kind == "flag":
        # shown as "" on the page: an unset flag; set flags are JSON booleans
        return lambda r, w, t: "" if r.random() < 0.6 else r.random() < 0.5
    if kind == "timestamp":
        return lambda r, w, t: "" if r.random() < 0.3 else _timestamp(r, w, t)
    # an unknown text column: mostly empty, as most columns on the vendor page are
    return lambda r, w, t: _maybe(r, 0.7, f"{r.choice(_CODES)}-{r.randint(100, 99999)}")


def generator_for(field: FieldSpec) -> ValueGenerator:
    """The value generator of one field: by name, then by name pattern, then by kind.

    A name rule only applies when it produces the field's JSON type, so a declaration that
    changes a field's ``dc_kind`` still gets the right type.
    """
    named = _BY_NAME.get(field.name)
    named_kind = "int" if field.name in _INT_NAMES else "string"
    if named is not None and field.kind == named_kind:
        return named
    for pattern, kind, gen in _BY_PATTERN:
        if kind == field.kind and pattern.search(field.name):
            return gen
    return _by_kind(field.kind)


_VOLATILE = re.compile(
    r"Notes|Comments|Status|Text|Description|Details|Priority|Abstract|Assigned|Balance|"
    r"Completed|Archived|DoNot|VIP|Closed|Enabled"
)


def is_volatile(field: FieldSpec) -> bool:
    """Whether an ``Updated`` version may change this field (the rest stay with the key)."""
    return field.kind in ("bool", "flag", "money", "timestamp") or bool(
        _VOLATILE.search(field.name)
    )


def make_personas(
    rng: random.Random,
    count: int,
    store_ids: tuple[int, ...],
    store_codes: tuple[str, ...],
    times: tuple[int, int],
) -> list[Persona]:
    """``count`` random personas for profile generation."""
    return [
        Persona(
            first=rng.choice(FIRST_NAMES),
            last=rng.choice(LAST_NAMES),
            company=rng.choice(COMPANIES),
            place=rng.choice(PLACES),
            street=rng.choice(STREETS),
            store_ids=store_ids,
            store_codes=store_codes,
            times=times,
        )
        for _ in range(count)
    ]
