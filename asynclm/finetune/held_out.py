"""Tool families kept out of training: evaluation calls tools the model has never seen."""

from __future__ import annotations

from asynclm.finetune import pools as P
from asynclm.finetune.catalog import choice, integer, number, text
from asynclm.finetune.family import Chain, Family

HELD_OUT: tuple[Family, ...] = (
    Family(
        "get_tide_times",
        "High tide time and height at a harbour.",
        {
            "harbour": text("Harbour name.", ("Brest", "Dover", "Cork", "Bergen", "Porto", "Kiel")),
            "date": text("Date, YYYY-MM-DD.", P.date, False),
        },
        ("the high tide at {harbour}", "high tide in {harbour} on {date}"),
        lambda a, r: {"high_tide": P.clock(r), "height_m": round(r.uniform(1, 7), 1)},
        ("High tide at {harbour} is at {high_tide}, {height_m} m.",),
        held_out=True,
        errors=("tide gauge offline",),
        plain=("high tide {high_tide}, {height_m} m",),
        plain_says=("At {harbour}: {result}.",),
    ),
    Family(
        "lookup_isbn",
        "Title, author and year of a book by ISBN.",
        {"isbn": text("The 13-digit ISBN.", lambda r: f"978{r.randint(10**9, 10**10 - 1)}")},
        ("the book with ISBN {isbn}",),
        lambda a, r: {
            "title": f"The {r.choice(P.MONTHS)} {r.choice(('Garden', 'River', 'Letter'))}",
            "author": P.person(r),
            "year": r.randint(1950, 2025),
        },
        ("ISBN {isbn} is '{title}' by {author} ({year}).",),
        held_out=True,
    ),
    Family(
        "count_parking",
        "Free parking spaces in a city district.",
        {
            "city": text("City name.", P.CITIES),
            "district": text("District.", ("centre", "north", "harbour", "old town"), False),
        },
        ("free parking in {city}", "parking spaces in the {district} of {city}"),
        lambda a, r: {"free_spaces": r.randint(0, 300)},
        ("{city} has {free_spaces} free parking spaces.",),
        held_out=True,
    ),
    Family(
        "shoe_size",
        "Converts a shoe size between sizing systems.",
        {
            "size": number("The size.", 4, 13, 1),
            "from_system": choice("Source system.", ["EU", "US", "UK"]),
            "to_system": choice("Target system.", ["EU", "US", "UK"]),
        },
        ("{from_system} shoe size {size} in {to_system} sizes",),
        lambda a, r: {"converted": round(r.uniform(4, 46), 1)},
        ("{from_system} {size} is {to_system} {converted}.",),
        held_out=True,
    ),
    Family(
        "next_train",
        "Next train between two stations.",
        {"station": text("Departure station.", P.CITIES), "to": text("Destination.", P.CITIES)},
        ("the next train from {station} to {to}",),
        lambda a, r: {"departs": P.clock(r), "platform": r.randint(1, 18)},
        ("The next train from {station} to {to} leaves at {departs} from platform {platform}.",),
        held_out=True,
        errors=("rail service unavailable",),
    ),
    Family(
        "domain_status",
        "Whether an internet domain name can be registered.",
        {
            "domain": text(
                "Domain name.", lambda r: f"{r.choice(P.FIRST).lower()}{r.randint(1, 999)}.io"
            )
        },
        ("whether {domain} is available",),
        lambda a, r: {"status": r.choice(("available", "taken")), "price": r.randint(8, 90)},
        ("{domain} is {status} ({price} USD a year).",),
        held_out=True,
    ),
    Family(
        "pollen_level",
        "Pollen count in a city today.",
        {"city": text("City name.", P.CITIES)},
        ("the pollen count in {city}",),
        lambda a, r: {"index": r.randint(0, 12), "level": r.choice(("low", "medium", "high"))},
        ("Pollen in {city} is {level} (index {index}).",),
        held_out=True,
    ),
    Family(
        "museum_hours",
        "Opening hours of a museum on a weekday.",
        {
            "museum": text(
                "Museum name.", ("Louvre", "Prado", "Uffizi", "Tate", "MoMA", "Rijksmuseum")
            ),
            "weekday": text("Day of the week.", P.WEEKDAYS),
        },
        ("the opening hours of the {museum} on {weekday}",),
        lambda a, r: {"opens": f"0{r.randint(8, 9)}:00", "closes": f"{r.randint(17, 21)}:00"},
        ("On {weekday} the {museum} opens at {opens} and closes at {closes}.",),
        held_out=True,
    ),
    Family(
        "find_employee",
        "Office city of an employee.",
        {"name": text("The employee's full name.", P.person)},
        ("where {name} works",),
        lambda a, r: {
            "office": r.choice(P.CITIES),
            "team": r.choice(("sales", "research", "legal")),
        },
        ("{name} works in {office} on the {team} team.",),
        held_out=True,
    ),
    Family(
        "reserve_bike",
        "Reserves a rental bike at a station.",
        {"city": text("City name.", P.CITIES), "hours": integer("Rental hours.", 1, 8)},
        ("reserve a bike in {city} for {hours} hours",),
        lambda a, r: {"status": "reserved", "code": P.code(r, "BK", 4)},
        ("Your bike in {city} is {status} for {hours} hours, code {code}.",),
        verb=True,
        held_out=True,
    ),
)


HELD_OUT_CHAINS: tuple[Chain, ...] = (
    Chain(
        "find_employee",
        "office",
        "count_parking",
        "city",
        ("free parking near the office of {a.name}",),
    ),
    Chain(
        "find_employee",
        "office",
        "pollen_level",
        "city",
        ("the pollen count where {a.name} works",),
    ),
)
