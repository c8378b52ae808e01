"""The synthetic tool families trained on, and the chains that link them (held out: held_out.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from random import Random
from typing import Any

from asynclm.finetune import pools as P
from asynclm.finetune.family import Chain, Family, Param

# ---- argument helpers -----------------------------------------------------------------------


def text(description: str, pool: Sequence[Any] | Any, required: bool = True) -> Param:
    draw = pool if callable(pool) else (lambda rng, pool=pool: rng.choice(pool))
    return Param("string", description, draw, required)


def integer(description: str, low: int, high: int, required: bool = True) -> Param:
    return Param("integer", description, lambda rng: rng.randint(low, high), required)


def number(description: str, low: float, high: float, digits: int = 1, req: bool = True) -> Param:
    return Param("number", description, lambda rng: round(rng.uniform(low, high), digits), req)


def choice(description: str, values: Sequence[Any], required: bool = True) -> Param:
    kind = "integer" if isinstance(values[0], int) else "string"
    return Param(kind, description, lambda rng: rng.choice(values), required, tuple(values))


def flag(description: str) -> Param:
    return Param("boolean", description, lambda rng: rng.random() < 0.5, False)


def several(description: str, pool: Sequence[str], k: tuple[int, int] = (2, 3)) -> Param:
    return Param(
        "array",
        description,
        lambda rng: rng.sample(list(pool), rng.randint(*k)),
        True,
        None,
        "string",
    )


def _company(rng: Random) -> str:
    return rng.choice(P.COMPANIES)[0]


def _symbol(rng: Random) -> str:
    return rng.choice(P.COMPANIES)[1]


def _element(rng: Random) -> str:
    return rng.choice(P.ELEMENTS)[0]


# ---- result helpers -------------------------------------------------------------------------


def _weather(a: dict, r: Random) -> dict:
    celsius = r.randint(-8, 36)
    temp = celsius if a.get("unit", "celsius") == "celsius" else round(celsius * 9 / 5 + 32)
    return {"city": a["city"], "temperature": temp, "conditions": r.choice(P.CONDITIONS)}


def _convert(a: dict, r: Random) -> dict:
    return {"converted": round(a["amount"] * r.uniform(0.5, 1.6), 2), "currency": a["to_currency"]}


def _bmi(a: dict, r: Random) -> dict:
    return {"bmi": round(a["weight_kg"] / a["height_m"] ** 2, 1)}


def _route(a: dict, r: Random) -> dict:
    speed = {"driving": 1, "transit": 2, "walking": 6, "cycling": 3}[a.get("mode", "driving")]
    return {"minutes": r.randint(8, 45) * speed}


TRAINING: tuple[Family, ...] = (
    Family(
        "get_weather",
        "Current weather in a city.",
        {
            "city": text("The city's name.", P.CITIES),
            "unit": choice("Temperature unit.", ["celsius", "fahrenheit"], False),
        },
        (
            "the weather in {city}",
            "the current weather in {city}",
            "the weather in {city} in {unit}",
        ),
        _weather,
        (
            "It is {conditions} and {temperature} degrees in {city}.",
            "{city}: {conditions}, {temperature} degrees.",
        ),
        errors=("city not found", "weather service unavailable"),
        plain=("{conditions}, {temperature} C", "{temperature} degrees and {conditions}"),
        plain_says=("In {city} it is {result}.", "{city}: {result}."),
    ),
    Family(
        "get_flight_price",
        "Cheapest economy fare between two airports.",
        {
            "origin": text("IATA code of the departure airport.", P.AIRPORTS),
            "destination": text("IATA code of the arrival airport.", P.AIRPORTS),
            "date": text("Departure date, YYYY-MM-DD.", P.date, False),
        },
        (
            "the cheapest flight from {origin} to {destination}",
            "a flight from {origin} to {destination} on {date}",
        ),
        lambda a, r: {
            "price": P.money(r, 60, 1400),
            "currency": "USD",
            "airline": r.choice(("SkyJet", "AeroNova", "BlueWing", "Polar Air")),
        },
        (
            "A flight from {origin} to {destination} costs {price} {currency} with {airline}.",
            "{airline} flies {origin} to {destination} for {price} {currency}.",
        ),
        errors=("no flights found for this route",),
    ),
    Family(
        "get_hotel_price",
        "Average nightly price of a hotel room in a city.",
        {
            "city": text("City name.", P.CITIES),
            "nights": integer("Number of nights.", 1, 9, False),
            "stars": choice("Hotel category.", [2, 3, 4, 5], False),
        },
        (
            "hotel prices in {city}",
            "a {stars}-star hotel in {city}",
            "a hotel in {city} for {nights} nights",
        ),
        lambda a, r: {
            "hotel": f"Hotel {r.choice(P.LAST)}",
            "price_per_night": r.randint(45, 480),
            "currency": "EUR",
        },
        (
            "{hotel} in {city} costs {price_per_night} {currency} per night.",
            "A room at {hotel} in {city} is {price_per_night} {currency} a night.",
        ),
    ),
    Family(
        "check_visa",
        "Whether a traveller needs a visa to enter a country.",
        {
            "country": text("Country to visit.", P.COUNTRIES),
            "nationality": text("The traveller's nationality, as a country name.", P.COUNTRIES),
        },
        (
            "whether a citizen of {nationality} needs a visa for {country}",
            "the visa rules for {country} with a passport from {nationality}",
        ),
        lambda a, r: {
            "status": r.choice(("visa required", "visa-free", "e-visa")),
            "max_stay_days": r.choice((30, 60, 90, 180)),
        },
        (
            "For {country} with a {nationality} passport: {status}, up to {max_stay_days} days.",
            "Visiting {country} from {nationality} is {status} for up to {max_stay_days} days.",
        ),
        errors=("visa service unavailable", "upstream connection refused"),
    ),
    Family(
        "get_stock_price",
        "Latest trading price of a stock.",
        {"symbol": text("Ticker symbol, e.g. AAPL.", _symbol)},
        ("the stock price of {symbol}", "the latest price of {symbol} shares"),
        lambda a, r: {
            "symbol": a["symbol"],
            "price": P.money(r, 12, 900),
            "change_percent": round(r.uniform(-4, 4), 2),
        },
        (
            "{symbol} trades at {price} ({change_percent}% today).",
            "{symbol} is at {price}, a change of {change_percent}%.",
        ),
        plain=("{price}",),
        plain_says=("{symbol} is at {result}.",),
    ),
    Family(
        "convert_currency",
        "Converts an amount of money between currencies.",
        {
            "amount": number("The amount.", 5, 5000, 2),
            "from_currency": text("ISO code of the source currency.", P.CURRENCIES),
            "to_currency": text("ISO code of the target currency.", P.CURRENCIES),
        },
        (
            "{amount} {from_currency} converted to {to_currency}",
            "how much {amount} {from_currency} is in {to_currency}",
        ),
        _convert,
        ("{amount} {from_currency} is {converted} {to_currency}.",),
    ),
    Family(
        "get_exchange_rate",
        "Exchange rate between two currencies.",
        {
            "base": text("Base currency code.", P.CURRENCIES),
            "target": text("Target currency code.", P.CURRENCIES),
        },
        ("the exchange rate from {base} to {target}", "the {base}/{target} rate"),
        lambda a, r: {"rate": round(r.uniform(0.05, 160), 4)},
        ("1 {base} is {rate} {target}.", "The {base} to {target} rate is {rate}."),
    ),
    Family(
        "translate_text",
        "Translates a short text into another language.",
        {
            "text": text("The text to translate.", P.PHRASES),
            "target_language": text("Language to translate into.", P.LANGUAGES),
        },
        ("the {target_language} for '{text}'", "how to say '{text}' in {target_language}"),
        lambda a, r: {"translation": f"{a['text']} ({a['target_language'][:2].lower()})"},
        ("In {target_language}, '{text}' is '{translation}'.",),
    ),
    Family(
        "get_local_time",
        "Current local time in a city.",
        {"city": text("City name.", P.CITIES)},
        ("the local time in {city}", "what time it is in {city}"),
        lambda a, r: {
            "time": P.clock(r),
            "utc_offset": r.choice(("+00:00", "+01:00", "-05:00", "+09:00", "+05:30", "-03:00")),
        },
        ("It is {time} in {city} (UTC{utc_offset}).", "The time in {city} is {time}."),
        plain=("{time}",),
        plain_says=("It is {result} in {city}.",),
    ),
    Family(
        "get_population",
        "Population of a country.",
        {"country": text("Country name.", P.COUNTRIES)},
        ("the population of {country}", "how many people live in {country}"),
        lambda a, r: {"population": r.randint(2_000_000, 340_000_000)},
        ("{country} has {population} inhabitants.", "The population of {country} is {population}."),
    ),
    Family(
        "search_restaurants",
        "Finds restaurants in a city serving a cuisine.",
        {
            "city": text("City name.", P.CITIES),
            "cuisine": text(
                "Type of food.",
                ("Italian", "Thai", "Mexican", "Indian", "vegan", "Japanese", "Greek"),
            ),
            "max_results": integer("How many to return.", 2, 3, False),
        },
        ("{cuisine} restaurants in {city}", "the best {max_results} {cuisine} places in {city}"),
        lambda a, r: {"restaurants": r.sample(P.RESTAURANTS, a.get("max_results", 2))},
        ("{cuisine} places in {city}: {restaurants}.", "In {city} try {restaurants}."),
    ),
    Family(
        "book_table",
        "Reserves a table at a restaurant.",
        {
            "restaurant": text("Restaurant name.", P.RESTAURANTS),
            "people": integer("Number of guests.", 1, 10),
            "time": text("Time, HH:MM.", P.clock),
        },
        (
            "book a table for {people} at {restaurant} at {time}",
            "reserve {restaurant} for {people} people at {time}",
        ),
        lambda a, r: {"status": "confirmed", "confirmation": P.code(r, "RES")},
        (
            "Your table for {people} at {restaurant} is {status} (reference {confirmation}).",
            "Booked {restaurant} at {time}: confirmation {confirmation}.",
        ),
        verb=True,
        errors=("no table available at that time",),
    ),
    Family(
        "send_email",
        "Sends an email.",
        {
            "to": text("Recipient address.", lambda r: f"{P.username(r)}@example.com"),
            "subject": text(
                "Subject line.",
                ("Meeting notes", "Invoice", "Weekend plans", "Project update", "Lunch on Friday"),
            ),
            "body": text(
                "Message text.", ("See you soon.", "Thanks again!", "Details attached."), False
            ),
        },
        (
            "send an email to {to} with the subject '{subject}'",
            "email {to} about '{subject}' saying '{body}'",
        ),
        lambda a, r: {"status": "sent", "message_id": P.code(r, "MSG", 6)},
        ("The email to {to} was {status} (id {message_id}).", "Sent '{subject}' to {to}."),
        verb=True,
        errors=("mailbox full", "invalid recipient address"),
    ),
    Family(
        "create_event",
        "Adds an event to the user's calendar.",
        {
            "title": text(
                "Event title.",
                ("Dentist", "Team sync", "Yoga", "Dinner with Sam", "Flight", "Call mom"),
            ),
            "date": text("Date, YYYY-MM-DD.", P.date),
            "time": text("Start time, HH:MM.", P.clock),
            "duration_minutes": integer("Length in minutes.", 15, 120, False),
        },
        (
            "add '{title}' to my calendar on {date} at {time}",
            "schedule '{title}' on {date} at {time} for {duration_minutes} minutes",
        ),
        lambda a, r: {"event_id": P.code(r, "EVT"), "status": "created"},
        ("'{title}' is on your calendar for {date} at {time} (event {event_id}).",),
        verb=True,
    ),
    Family(
        "get_distance",
        "Road distance between two cities.",
        {
            "origin": text("Start city.", P.CITIES),
            "destination": text("End city.", P.CITIES),
            "unit": choice("Distance unit.", ["km", "miles"], False),
        },
        (
            "the distance from {origin} to {destination}",
            "how far {destination} is from {origin} in {unit}",
        ),
        lambda a, r: {"distance": r.randint(40, 4800), "unit": a.get("unit", "km")},
        (
            "{origin} to {destination} is {distance} {unit}.",
            "It is {distance} {unit} from {origin} to {destination}.",
        ),
    ),
    Family(
        "calculate_bmi",
        "Body mass index from weight and height.",
        {
            "weight_kg": number("Weight in kilograms.", 45, 120, 1),
            "height_m": number("Height in metres.", 1.5, 2.0, 2),
        },
        (
            "my BMI at {weight_kg} kg and {height_m} m",
            "the body mass index for {weight_kg} kg and {height_m} m",
        ),
        _bmi,
        ("At {weight_kg} kg and {height_m} m the BMI is {bmi}.", "Your BMI is {bmi}."),
    ),
    Family(
        "get_calories",
        "Calories in a portion of food.",
        {"food": text("The food.", P.FOODS), "grams": integer("Portion in grams.", 50, 400)},
        ("the calories in {grams} g of {food}", "how many calories {grams} grams of {food} have"),
        lambda a, r: {"calories": r.randint(20, 700)},
        ("{grams} g of {food} has {calories} calories.",),
    ),
    Family(
        "get_user_profile",
        "Profile of a user account.",
        {"username": text("The user's handle.", P.username)},
        ("the profile of user {username}", "who user {username} is"),
        lambda a, r: {
            "name": P.person(r),
            "city": r.choice(P.CITIES),
            "email": f"{a['username']}@example.com",
        },
        ("User {username} is {name} from {city}.",),
        errors=("user not found",),
    ),
    Family(
        "find_order",
        "Looks up an order by its number.",
        {"order_id": text("Order number.", lambda r: P.code(r, "ORD"))},
        ("the status of order {order_id}", "where my order {order_id} is"),
        lambda a, r: {
            "status": r.choice(("shipped", "processing", "delivered")),
            "product": r.choice(P.PRODUCTS),
            "tracking_number": P.code(r, "TRK", 7),
        },
        (
            "Order {order_id} ({product}) is {status}.",
            "Your {product} from order {order_id} is {status}.",
        ),
        errors=("order not found",),
    ),
    Family(
        "track_package",
        "Current location of a parcel.",
        {"tracking_number": text("Carrier tracking number.", lambda r: P.code(r, "TRK", 7))},
        ("where package {tracking_number} is", "the tracking status of {tracking_number}"),
        lambda a, r: {"location": r.choice(P.CITIES), "eta": P.date(r)},
        ("Package {tracking_number} is in {location}, arriving {eta}.",),
    ),
    Family(
        "get_air_quality",
        "Air quality index of a city.",
        {"city": text("City name.", P.CITIES)},
        ("the air quality in {city}", "how clean the air is in {city}"),
        lambda a, r: {"aqi": r.randint(5, 240), "level": r.choice(("good", "moderate", "poor"))},
        ("The air in {city} is {level} (AQI {aqi}).",),
    ),
    Family(
        "play_music",
        "Plays music on the user's speaker.",
        {
            "genre": text("Music genre.", P.GENRES),
            "volume": integer("Volume from 1 to 10.", 1, 10, False),
        },
        ("play some {genre}", "play {genre} at volume {volume}"),
        lambda a, r: {"status": "playing", "track": f"{r.choice(P.LAST)} {r.choice(P.MONTHS)}"},
        ("Now playing {track} ({genre}).",),
        verb=True,
    ),
    Family(
        "set_thermostat",
        "Sets the target temperature of a room.",
        {
            "temperature": integer("Target in degrees Celsius.", 16, 26),
            "room": text("Room name.", ("living room", "bedroom", "kitchen", "office"), False),
        },
        ("set the thermostat to {temperature} degrees", "set the {room} to {temperature} degrees"),
        lambda a, r: {"status": "ok", "temperature": a["temperature"]},
        ("The thermostat is set to {temperature} degrees.",),
        verb=True,
        errors=("thermostat offline",),
    ),
    Family(
        "get_match_result",
        "Result of a team's last match.",
        {"team": text("Team name.", P.TEAMS)},
        ("how the {team} did in their last game", "the last result of {team}"),
        lambda a, r: {
            "opponent": r.choice(P.TEAMS),
            "score": f"{r.randint(0, 5)}-{r.randint(0, 5)}",
        },
        ("The {team} played {opponent}: {score}.",),
    ),
    Family(
        "lookup_element",
        "Chemical symbol and atomic mass of an element.",
        {"element": text("Element name.", _element)},
        ("the atomic mass of {element}", "the symbol and mass of {element}"),
        lambda a, r: next(
            {"symbol": s, "atomic_mass": m} for n, s, m in P.ELEMENTS if n == a["element"]
        ),
        ("{element} ({symbol}) has an atomic mass of {atomic_mass}.",),
    ),
    Family(
        "get_route_time",
        "Travel time between two places.",
        {
            "origin": text("Start address or city.", P.CITIES),
            "destination": text("Destination.", P.CITIES),
            "mode": choice("How to travel.", ["driving", "transit", "walking", "cycling"], False),
        },
        (
            "how long it takes from {origin} to {destination}",
            "the travel time from {origin} to {destination} by {mode}",
        ),
        _route,
        ("It takes {minutes} minutes from {origin} to {destination}.",),
    ),
    Family(
        "check_stock",
        "Units of a product in stock.",
        {
            "product": text("Product name.", P.PRODUCTS),
            "store_id": integer("Store number.", 1, 60, False),
        },
        ("whether the {product} is in stock", "how many {product} units store {store_id} has"),
        lambda a, r: {"in_stock": r.randint(0, 40)},
        ("There are {in_stock} {product} units in stock.",),
    ),
    Family(
        "get_product_price",
        "Current price of a product in the shop.",
        {"product": text("Product name.", P.PRODUCTS)},
        ("the price of the {product}", "how much the {product} costs"),
        lambda a, r: {"price": P.money(r, 4, 300), "currency": "USD"},
        ("The {product} costs {price} {currency}.",),
    ),
    Family(
        "get_ticker",
        "Stock ticker symbol of a company.",
        {"company": text("Company name.", _company)},
        ("the ticker of {company}",),
        lambda a, r: {"symbol": next(s for n, s in P.COMPANIES if n == a["company"])},
        ("{company} trades as {symbol}.",),
    ),
    Family(
        "nearest_airport",
        "The main airport serving a city.",
        {"city": text("City name.", P.CITIES)},
        ("the airport nearest to {city}",),
        lambda a, r: {"airport": r.choice(P.AIRPORTS)},
        ("The airport for {city} is {airport}.",),
    ),
    Family(
        "get_sun_times",
        "Sunrise and sunset in a city on a date.",
        {"city": text("City name.", P.CITIES), "date": text("Date, YYYY-MM-DD.", P.date, False)},
        ("sunrise and sunset in {city}", "when the sun rises in {city} on {date}"),
        lambda a, r: {
            "sunrise": f"0{r.randint(5, 7)}:{r.randint(10, 59)}",
            "sunset": f"{r.randint(17, 21)}:{r.randint(10, 59)}",
        },
        ("In {city} the sun rises at {sunrise} and sets at {sunset}.",),
    ),
    Family(
        "triangle_area",
        "Area of a triangle from its base and height.",
        {"base": integer("Base length.", 2, 60), "height": integer("Height.", 2, 60)},
        ("the area of a triangle with base {base} and height {height}",),
        lambda a, r: {"area": a["base"] * a["height"] / 2},
        ("The area is {area}.", "A triangle with base {base} and height {height} has area {area}."),
    ),
    Family(
        "compound_interest",
        "Final amount of an investment with yearly compound interest.",
        {
            "principal": integer("Initial amount.", 100, 20000),
            "rate": number("Yearly rate as a fraction, e.g. 0.05.", 0.01, 0.09, 2),
            "years": integer("Number of years.", 1, 30),
        },
        ("what {principal} grows to at a rate of {rate} over {years} years",),
        lambda a, r: {"amount": round(a["principal"] * (1 + a["rate"]) ** a["years"], 2)},
        ("After {years} years {principal} grows to {amount}.",),
    ),
    Family(
        "math.gcd_of",
        "Greatest common divisor of two integers.",
        {"a": integer("First integer.", 6, 400), "b": integer("Second integer.", 6, 400)},
        ("the greatest common divisor of {a} and {b}", "the GCD of {a} and {b}"),
        lambda a, r: {"gcd": math.gcd(a["a"], a["b"])},
        ("The GCD of {a} and {b} is {gcd}.",),
    ),
    Family(
        "circle_area",
        "Area of a circle.",
        {"radius": number("The radius.", 1, 30, 1)},
        ("the area of a circle with radius {radius}",),
        lambda a, r: {"area": round(math.pi * a["radius"] ** 2, 2)},
        ("The area is {area}.",),
    ),
    Family(
        "get_showtimes",
        "Showtimes of a movie in a city.",
        {
            "movie": text("Movie title.", ("Dune", "Arrival", "Up", "Heat", "Coco", "Alien")),
            "city": text("City name.", P.CITIES),
            "date": text("Date, YYYY-MM-DD.", P.date, False),
        },
        ("showtimes for {movie} in {city}", "when {movie} plays in {city} on {date}"),
        lambda a, r: {
            "showtimes": sorted(r.sample(("14:00", "16:30", "18:45", "21:00", "22:15"), 2))
        },
        ("{movie} plays in {city} at {showtimes}.",),
    ),
)


CHAINS: tuple[Chain, ...] = (
    Chain(
        "get_user_profile",
        "city",
        "get_weather",
        "city",
        ("the weather where user {a.username} lives",),
    ),
    Chain(
        "get_ticker",
        "symbol",
        "get_stock_price",
        "symbol",
        ("the stock price of {a.company}", "how {a.company} shares are doing"),
    ),
    Chain(
        "nearest_airport",
        "airport",
        "get_flight_price",
        "origin",
        ("the cheapest flight from {a.city} to {b.destination}",),
    ),
    Chain(
        "find_order",
        "tracking_number",
        "track_package",
        "tracking_number",
        ("where the package of order {a.order_id} is",),
    ),
    Chain(
        "get_user_profile",
        "email",
        "send_email",
        "to",
        ("email user {a.username} with the subject '{b.subject}'",),
    ),
    Chain(
        "search_restaurants",
        "restaurants",
        "book_table",
        "restaurant",
        ("book a table for {b.people} at a {a.cuisine} place in {a.city} at {b.time}",),
    ),
    Chain(
        "get_product_price",
        "price",
        "convert_currency",
        "amount",
        ("the price of the {a.product} in {b.to_currency}",),
        {"from_currency": "USD"},
    ),
    Chain(
        "get_user_profile",
        "city",
        "get_local_time",
        "city",
        ("the local time where user {a.username} lives",),
    ),
)
