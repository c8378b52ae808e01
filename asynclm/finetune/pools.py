"""Value pools the synthetic tasks draw from (ASCII only, so answers copy them exactly)."""

from __future__ import annotations

from random import Random

CITIES = (
    "Paris",
    "Tokyo",
    "London",
    "Sydney",
    "Berlin",
    "Madrid",
    "Rome",
    "Oslo",
    "Cairo",
    "Lima",
    "Toronto",
    "Chicago",
    "Boston",
    "Seattle",
    "Denver",
    "Austin",
    "Dublin",
    "Vienna",
    "Prague",
    "Lisbon",
    "Athens",
    "Warsaw",
    "Helsinki",
    "Nairobi",
    "Mumbai",
    "Delhi",
    "Seoul",
    "Bangkok",
    "Hanoi",
    "Manila",
    "Jakarta",
    "Santiago",
    "Bogota",
    "Quito",
    "Havana",
    "Montreal",
    "Vancouver",
    "Miami",
    "Phoenix",
    "Dallas",
    "Zurich",
    "Geneva",
    "Munich",
    "Hamburg",
    "Milan",
    "Naples",
    "Porto",
    "Seville",
    "Krakow",
    "Budapest",
    "Istanbul",
    "Dubai",
    "Doha",
    "Singapore",
    "Osaka",
    "Kyoto",
    "Perth",
    "Auckland",
    "Cape Town",
    "New York",
    "San Francisco",
    "Los Angeles",
    "Buenos Aires",
    "Mexico City",
    "Rio de Janeiro",
)
COUNTRIES = (
    "France",
    "Japan",
    "Brazil",
    "Canada",
    "Kenya",
    "India",
    "Norway",
    "Peru",
    "Egypt",
    "Chile",
    "Spain",
    "Italy",
    "Germany",
    "Mexico",
    "Vietnam",
    "Ghana",
    "Poland",
    "Greece",
    "Ireland",
    "Portugal",
    "Thailand",
    "Argentina",
    "Morocco",
    "Sweden",
    "Finland",
    "Austria",
    "Turkey",
    "Australia",
    "Colombia",
    "Indonesia",
)
AIRPORTS = (
    "JFK",
    "LHR",
    "CDG",
    "HND",
    "SYD",
    "FRA",
    "MAD",
    "FCO",
    "OSL",
    "CAI",
    "LIM",
    "YYZ",
    "ORD",
    "BOS",
    "SEA",
    "DEN",
    "AUS",
    "DUB",
    "VIE",
    "PRG",
    "LIS",
    "ATH",
    "WAW",
    "HEL",
    "NBO",
    "BOM",
    "DEL",
    "ICN",
    "BKK",
    "SIN",
    "DXB",
    "DOH",
    "ZRH",
    "MUC",
    "AMS",
    "MEX",
    "GRU",
    "SFO",
    "LAX",
)
FIRST = (
    "Alice",
    "Bruno",
    "Chen",
    "Dana",
    "Emeka",
    "Fatima",
    "Gustav",
    "Hana",
    "Ivan",
    "Julia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Victor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Marco",
    "Aisha",
    "Lars",
    "Mei",
    "Diego",
    "Ines",
)
LAST = (
    "Garcia",
    "Smith",
    "Tanaka",
    "Okafor",
    "Novak",
    "Silva",
    "Khan",
    "Berg",
    "Rossi",
    "Dubois",
    "Kim",
    "Nguyen",
    "Lopez",
    "Meyer",
    "Costa",
    "Ivanova",
    "Haddad",
    "Walsh",
    "Moreau",
    "Sato",
)
COMPANIES = (
    ("Apple", "AAPL"),
    ("Microsoft", "MSFT"),
    ("Tesla", "TSLA"),
    ("Amazon", "AMZN"),
    ("Nvidia", "NVDA"),
    ("Netflix", "NFLX"),
    ("Intel", "INTC"),
    ("Adobe", "ADBE"),
    ("Oracle", "ORCL"),
    ("Spotify", "SPOT"),
    ("Uber", "UBER"),
    ("Airbnb", "ABNB"),
    ("Shopify", "SHOP"),
    ("Salesforce", "CRM"),
    ("IBM", "IBM"),
    ("Disney", "DIS"),
)
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "NOK", "SEK", "INR", "BRL", "MXN")
LANGUAGES = ("French", "Spanish", "German", "Italian", "Japanese", "Portuguese", "Dutch", "Korean")
PHRASES = (
    "good morning",
    "thank you very much",
    "where is the station",
    "how much does it cost",
    "see you tomorrow",
    "the bill, please",
    "I am lost",
    "happy birthday",
    "good night",
)
CONDITIONS = ("sunny", "cloudy", "light rain", "heavy rain", "snow", "windy", "foggy", "clear")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
PRODUCTS = (
    "wireless mouse",
    "desk lamp",
    "coffee grinder",
    "yoga mat",
    "backpack",
    "water bottle",
    "phone charger",
    "running shoes",
    "office chair",
    "notebook",
    "headphones",
    "kettle",
)
FOODS = ("banana", "apple", "rice", "oatmeal", "salmon", "egg", "avocado", "lentils", "yogurt")
GENRES = ("jazz", "rock", "classical", "hip hop", "ambient", "folk", "blues", "pop")
RESTAURANTS = (
    "Nopa",
    "Blue Door",
    "Casa Lina",
    "Golden Wok",
    "The Olive Tree",
    "Sakura House",
    "Luigi's",
    "Spice Route",
    "Harbor Grill",
    "Green Fork",
)
TEAMS = (
    "Lakers",
    "Celtics",
    "Arsenal",
    "Barcelona",
    "Yankees",
    "Dodgers",
    "Juventus",
    "Ajax",
    "Bulls",
    "Warriors",
    "Chelsea",
    "Porto",
)
ELEMENTS = (
    ("hydrogen", "H", 1.008),
    ("carbon", "C", 12.011),
    ("oxygen", "O", 15.999),
    ("iron", "Fe", 55.845),
    ("gold", "Au", 196.97),
    ("silver", "Ag", 107.87),
    ("neon", "Ne", 20.18),
    ("copper", "Cu", 63.546),
    ("zinc", "Zn", 65.38),
)
ERRORS = (
    "service unavailable",
    "timed out",
    "rate limit exceeded",
    "internal server error",
    "upstream connection refused",
    "quota exhausted for today",
)


def person(rng: Random) -> str:
    """A full name."""
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def username(rng: Random) -> str:
    """A user handle."""
    return f"{rng.choice(FIRST).lower()}{rng.randint(1, 99)}"


def date(rng: Random) -> str:
    """An ISO date in 2026."""
    return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def clock(rng: Random) -> str:
    """A time of day, HH:MM."""
    return f"{rng.randint(6, 22):02d}:{rng.choice(('00', '15', '30', '45'))}"


def money(rng: Random, low: float, high: float) -> float:
    """An amount with two decimals."""
    return round(rng.uniform(low, high), 2)


def code(rng: Random, prefix: str, digits: int = 5) -> str:
    """An identifier such as `ORD-48213`."""
    return f"{prefix}-{rng.randint(10 ** (digits - 1), 10**digits - 1)}"
