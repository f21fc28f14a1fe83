"""Guess My City's oracle: a question in English -> an intent -> the hidden city's answer.

`parse` normalises a question (`normalize`: case, accents, punctuation) and reads its intent
from keyword tables: a guess (it names one city, as a whole word, in any spelling of
`guess_my_city_data`), several cities at once, or a question about the city's continent,
country, population (with "more than X million" thresholds), coast, languages, weather,
landmarks, food, capital status or hemisphere, in open or yes/no form. `respond` answers it
for the city `CITIES[c]` with templated sentences, never with one that contains the city's
own names (`CANT_ANSWER` instead). `agentrl.envs.guess_my_city` is the environment.

  kind, text = respond(c, "Is it in Europe?")  # ("answer", "No, it is not in Europe.")
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Sequence

from agentrl.envs import guess_my_city_data as data

CITIES = data.CITIES
CANT_ANSWER = "I can't answer that question."

# --- normalisation and keyword tables (compiled once) ------------------------------------

_THOUSANDS = re.compile(r"(?<=\d)[,_](?=\d{3}\b)")
_STRAY_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")
_NON_WORD = re.compile(r"[^a-z0-9.]+")


def normalize(text: str) -> str:
  """Lowercase ASCII words and numbers: accents dropped, punctuation to single spaces."""
  text = unicodedata.normalize("NFD", text.lower()).encode("ascii", "ignore").decode("ascii")
  text = _STRAY_DOT.sub(" ", _THOUSANDS.sub("", text))
  return _NON_WORD.sub(" ", text).strip()


def _words(*words: str) -> re.Pattern:
  keys = sorted({normalize(w) for w in words}, key=len, reverse=True)
  return re.compile(r"\b(?:" + "|".join(re.escape(k) for k in keys) + r")\b")


def _lookup(table: dict[str, object]) -> tuple[re.Pattern, dict[str, object]]:
  """A regex matching any key of `table` (normalised, longest first) and the key map."""
  keyed = {normalize(k): v for k, v in table.items()}
  keys = sorted(keyed, key=len, reverse=True)
  return re.compile(r"\b(?:" + "|".join(re.escape(k) for k in keys) + r")\b"), keyed


# City names and aliases -> index. "salvador" is not El Salvador; "rio" not the Rio de la Plata.
_CITY_KEYS = {normalize(a): i for i, c in enumerate(CITIES) for a in (c.name,) + c.aliases}
_SPECIAL = {"salvador": r"(?<!el )salvador", "rio": r"rio(?! de la| grande)"}
_CITY_RE = re.compile(r"\b(?:" + "|".join(
    _SPECIAL.get(k, re.escape(k)) for k in sorted(_CITY_KEYS, key=len, reverse=True)) + r")\b")
_OWN_NAME_RE = [_words(c.name, *c.aliases) for c in CITIES]

_COUNTRIES = data.countries()
_PLACES: dict[str, tuple[str, tuple[str, ...]]] = {
    **{k: ("country", (v,)) for k, v in _COUNTRIES.items()},
    **{k: ("country", v) for k, v in data.COUNTRY_GROUPS.items()},
    **{k.lower(): ("region", (k,)) for k in data.REGIONS},
    **{k: ("region", (v,)) for k, v in data.REGION_ALIASES.items()},
    **{k: ("continent", v) for k, v in data.CONTINENT_ALIASES.items()},
}
_PLACE_RE, _PLACE_KEYS = _lookup(_PLACES)

_CITY_LANGUAGES = sorted({lang for c in CITIES for lang in c.languages})
_LANGUAGES: dict[str, tuple[str, ...]] = {
    **{lang.lower(): (lang,) for lang in _CITY_LANGUAGES + list(data.OTHER_LANGUAGES)},
    **data.LANGUAGE_ALIASES}
_LANGUAGE_RE, _LANGUAGE_KEYS = _lookup(_LANGUAGES)

_POP_CMP_CONTEXT = _words(
    "population", "populous", "populated", "people", "inhabitants", "residents", "live",
    "million", "millions", "thousand", "billion", "big", "bigger", "large", "larger", "size")
_POPULATION = _words(
    "population", "populous", "populated", "inhabitants", "residents", "megacity", "crowded",
    "how many", "many people", "people live", "live there", "lives there", "how big",
    "how large", "size", "big", "bigger", "biggest", "large", "larger", "largest", "small",
    "smaller", "smallest", "million", "millions")
_MORE = _words("more", "over", "above", "greater", "bigger", "larger", "exceed", "exceeds",
               "exceeding", "higher", "at least", "beyond")
_LESS = _words("less", "fewer", "under", "below", "smaller", "lower", "at most", "up to")
_BETWEEN = _words("between")
_NUMBER_WORDS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                 "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
                 "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
                 "hundred": 100, "half": 0.5}
_UNITS = {"million": 1.0, "millions": 1.0, "mil": 1.0, "mln": 1.0, "m": 1.0,
          "thousand": 1e-3, "thousands": 1e-3, "k": 1e-3, "billion": 1e3, "bn": 1e3}
_NUMBER = re.compile(r"\b(\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")\s*("
                     + "|".join(sorted(_UNITS, key=len, reverse=True)) + r")?\b")
_LANGUAGE = _words("language", "languages", "speak", "speaks", "spoken", "speaking", "speaker",
                   "speakers", "tongue", "dialect", "dialects", "lingo")
_FOOD = _words("food", "foods", "dish", "dishes", "eat", "eats", "eating", "eaten", "cuisine",
               "cuisines", "meal", "meals", "snack", "snacks", "delicacy", "delicacies",
               "recipe", "culinary", "cook", "cooking", "restaurant", "restaurants", "specialty",
               "speciality", "drink", "drinks", "dessert", "desserts", "taste", "tasty")
_CAPITAL = _words("capital", "capitals", "seat of government")
_HEMISPHERE = _words("hemisphere", "equator", "equatorial")
_COAST = _words("coast", "coasts", "coastal", "coastline", "sea", "seas", "seaside", "seafront",
                "ocean", "oceans", "beach", "beaches", "port", "seaport", "harbor", "harbour",
                "shore", "shoreline", "landlocked", "inland", "bay", "gulf", "waterfront",
                "maritime", "pacific", "atlantic")
_CLIMATE = _words("climate", "climates", "weather", "hot", "cold", "warm", "cool", "chilly",
                  "temperature", "temperatures", "degrees", "rain", "rains", "rainy", "raining",
                  "rainfall", "snow", "snows", "snowy", "snowing", "dry", "humid", "humidity",
                  "wet", "tropical", "tropics", "desert", "deserts", "arid", "season", "seasons",
                  "seasonal", "winter", "winters", "summer", "summers", "spring", "autumn",
                  "monsoon", "sunny", "mild", "freezing", "frost", "mediterranean",
                  "subtropical", "temperate", "typhoon", "typhoons", "hurricane", "hurricanes",
                  "heat")
_LANDMARK = _words("famous", "famed", "known", "landmark", "landmarks", "monument", "monuments",
                   "sight", "sights", "sightseeing", "attraction", "attractions", "tourist",
                   "tourists", "tourism", "visit", "visitors", "building", "buildings",
                   "museum", "museums", "temple", "temples", "tower", "towers", "palace",
                   "church", "cathedral", "mosque", "statue", "bridge", "park", "history",
                   "historic", "historical", "culture", "special", "hint", "clue", "see",
                   "architecture", "notable", "well known")
_CONTINENT = _words("continent", "continents", "part of the world", "region", "world region")
_COUNTRY = _words("country", "countries", "nation", "nations", "nationality", "where",
                  "located", "location")

_CLIMATE_TEXT = {
    data.TROP: "The weather is tropical: warm or hot all year round.",
    data.DESERT: "It is a desert city: very dry, with little rain.",
    data.SEMI: "The weather is dry (semi-arid), with hot summers.",
    data.MED: "The weather is Mediterranean: dry, warm summers and mild, wet winters.",
    data.SUB: "The weather is humid subtropical: hot, humid summers and mild or cool winters.",
    data.OCEAN: "The weather is temperate: mild summers, cool winters and rain all year.",
    data.CONT: "The weather is continental: warm or hot summers and cold winters.",
    data.HIGH: "It is high up in the mountains, so the weather is mild all year.",
}
_COAST_TEXT = {data.COASTAL: "It is on the coast, right by the sea.",
               data.NEAR: "It is near the sea, but not right on the coast.",
               data.INLAND: "It is inland, away from the sea."}


def _display(country: str) -> str:
  return data.COUNTRY_DISPLAY.get(country, country)


def _join(items: Sequence[str]) -> str:
  items = list(items)
  return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _amount(millions: float) -> str:
  """A threshold as the question gave it: "10 million", "500 thousand"."""
  if millions >= 1:
    return f"{round(millions, 3):g} million"
  return f"{round(millions * 1000, 3):g} thousand"


def _people(millions: float) -> str:
  """A rounded population: "14 million", "2.5 million", "850 thousand"."""
  if millions >= 10:
    return f"{round(millions)} million"
  if millions >= 1:
    return f"{round(millions * 2) / 2:g} million"
  return f"{round(millions * 20) * 50} thousand"


# --- the parser: question -> intent --------------------------------------------------------


def _numbers(text: str) -> list[float]:
  values = []
  for match in _NUMBER.finditer(text):
    word, unit = match.group(1), match.group(2)
    if word in _NUMBER_WORDS and not unit:
      continue  # "a", "one" without a unit are not amounts
    value = _NUMBER_WORDS[word] if word in _NUMBER_WORDS else float(word)
    if unit:
      value *= _UNITS[unit]
    elif value >= 1000:
      value /= 1e6  # a head count
    values.append(value)
  return values


def _places(text: str) -> dict[str, list[str]]:
  found: dict[str, list[str]] = {"country": [], "region": [], "continent": []}
  for match in _PLACE_RE.finditer(text):
    kind, names = _PLACE_KEYS[match.group(0)]
    found[kind].extend(n for n in names if n not in found[kind])
  return found


@functools.lru_cache(maxsize=1 << 16)
def parse(question: str) -> tuple:
  """The intent of a question: ("guess", i), ("population",), ("country_is", names), ...

  Returns ("unknown",) for what the oracle does not understand and ("many",) for a question
  that names several cities.
  """
  text = normalize(question)
  if not text:
    return ("unknown",)
  named = {_CITY_KEYS[m.group(0)] for m in _CITY_RE.finditer(text)}
  if len(named) > 1:
    return ("many",)
  if named:
    return ("guess", named.pop())
  topic = text.replace("ivory coast", "cote d ivoire")
  if _POP_CMP_CONTEXT.search(topic) and (numbers := _numbers(topic)):
    if _BETWEEN.search(topic) and len(numbers) >= 2:
      return ("pop_between", min(numbers[:2]), max(numbers[:2]))
    if _MORE.search(topic):
      return ("pop_more", numbers[0])
    if _LESS.search(topic):
      return ("pop_less", numbers[0])
  keys = [m.group(0) for m in _LANGUAGE_RE.finditer(topic)]
  if _LANGUAGE.search(topic) or any(k not in _PLACE_KEYS for k in keys):
    return ("language", tuple(dict.fromkeys(n for k in keys for n in _LANGUAGE_KEYS[k])))
  if _FOOD.search(topic):
    return ("food",)
  if _POPULATION.search(topic):
    return ("population",)
  places = _places(topic)
  if _CAPITAL.search(topic):
    return ("capital", tuple(places["country"]))
  for intent, pattern in (("hemisphere", _HEMISPHERE), ("coast", _COAST),
                          ("climate", _CLIMATE), ("landmark", _LANDMARK)):
    if pattern.search(topic):
      return (intent,)
  for kind in ("country", "region", "continent"):
    if places[kind]:
      return (kind + "_is", tuple(places[kind]))
  if _CONTINENT.search(topic):
    return ("continent",)
  if _COUNTRY.search(topic):
    return ("country",)
  return ("unknown",)


# --- the oracle: (city, intent) -> answer ---------------------------------------------------


def _yes_no(yes: bool, names: Sequence[str], hit: str, yes_text: str, no_one: str,
            no_many: str) -> str:
  if yes:
    return yes_text.format(hit)
  return no_one.format(names[0]) if len(names) == 1 else no_many


def _answer(c: int, intent: tuple) -> str:
  city, kind = CITIES[c], intent[0]
  if kind == "continent":
    extra = data.SECOND_CONTINENT.get(city.name)
    return f"It is in {city.continent}" + (f", though part of it lies in {extra}." if extra
                                            else ".")
  if kind == "country":
    if city.country == city.name:
      return "It is a city-state in Southeast Asia."
    return f"It is in {_display(city.country)}."
  if kind == "population":
    return f"About {_people(city.population)} people live there."
  if kind == "pop_more":
    t = _amount(intent[1])
    return (f"Yes, more than {t} people live there." if city.population > intent[1]
            else f"No, not more than {t} people live there.")
  if kind == "pop_less":
    t = _amount(intent[1])
    return (f"Yes, fewer than {t} people live there." if city.population < intent[1]
            else f"No, not fewer than {t} people live there.")
  if kind == "pop_between":
    lo, hi = _amount(intent[1]), _amount(intent[2])
    inside = intent[1] <= city.population <= intent[2]
    return f"{'Yes' if inside else 'No'}, the population is {'' if inside else 'not '}" \
           f"between {lo} and {hi}."
  if kind == "coast":
    return _COAST_TEXT[city.coast]
  if kind == "climate":
    return _CLIMATE_TEXT[city.climate]
  if kind == "landmark":
    return f"It is famous for {city.landmarks}."
  if kind == "food":
    return f"Local favourites include {city.food}."
  if kind == "hemisphere":
    return f"It is in the {'northern' if city.hemisphere == 'N' else 'southern'} hemisphere."
  if kind == "language":
    named = intent[1]
    if not named:
      return f"People there mainly speak {_join(city.languages)}."
    hits = [lang for lang in city.languages if lang in named]
    return _yes_no(bool(hits), named, hits[0] if hits else "", "Yes, people there speak {}.",
                   "No, {} is not a main language there.",
                   "No, none of those is a main language there.")
  if kind == "capital":
    named = intent[1]
    if not named:
      return ("Yes, it is the capital of its country." if city.capital
              else "No, it is not a national capital.")
    return _yes_no(city.capital and city.country in named, [_display(n) for n in named],
                   _display(city.country), "Yes, it is the capital of {}.",
                   "No, it is not the capital of {}.",
                   "No, it is not the capital of any of those countries.")
  if kind == "country_is":
    names = intent[1]
    return _yes_no(city.country in names, [_display(n) for n in names],
                   _display(city.country), "Yes, it is in {}.", "No, it is not in {}.",
                   "No, it is not in any of those countries.")
  if kind == "region_is":
    hits = [r for r in intent[1] if city.country in data.REGIONS[r]]
    return _yes_no(bool(hits), intent[1], hits[0] if hits else "", "Yes, it is in {}.",
                   "No, it is not in {}.", "No, it is not in any of those regions.")
  if kind == "continent_is":
    names = intent[1]
    if city.continent in names:
      return f"Yes, it is in {city.continent}."
    extra = data.SECOND_CONTINENT.get(city.name)
    if extra in names:
      return f"Partly: most of it is in {city.continent}, but part of it lies in {extra}."
    return _yes_no(False, names, "", "", "No, it is not in {}.",
                   "No, it is not in any of those continents.")
  raise ValueError(f"no answer for intent {intent!r}")


def respond(c: int, question: str) -> tuple[str, str]:
  """The oracle's reply to `question` when the hidden city is `CITIES[c]`.

  Returns (kind, text): ("win", closing message), ("answer", answer) or ("invalid", reason).
  """
  intent = parse(question)
  kind = intent[0]
  if kind == "unknown":
    return "invalid", "I don't understand the question"
  if kind == "many":
    return "invalid", "the question names more than one city; guess one city at a time"
  if kind == "guess":
    if intent[1] == c:
      return "win", f"Yes! It is {CITIES[c].name}. You guessed my city."
    return "answer", f"No, it is not {CITIES[intent[1]].name}."
  text = _answer(c, intent)
  if _OWN_NAME_RE[c].search(normalize(text)):
    text = CANT_ANSWER
  return "answer", text
