"""A deterministic pool of synthetic facts for experiments and tests.

``fact_pool(500)`` gives 500 person-city facts such as "Aria Nakamura lives in
Thessaloniki", the paper's setting (§4.4). Names combine first and last names of many
origins; every subject in one pool is unique, and within each run of 50 subjects no first or
last name repeats (MEMIT reads a fact's key at the subject's last token, so facts about
people who share a surname interfere). Objects are plain-ASCII, well-known values
the embedded model spells without accents; cities that are also common words or
prefixes of other words ("Nice", "Split", "Porto") and cities usually written with a
qualifier ("Delhi" → "New Delhi") are left out so that recall checks stay unambiguous.

Other relations (``relation=``) draw from their own object lists, for experiments beyond
the paper's person-city facts.
"""

from __future__ import annotations

import random

from memlog.core.facts import Fact
from memlog.errors import UserError

FIRST_NAMES: tuple[str, ...] = (
    "Aria", "Mateo", "Yuki", "Amara", "Lars", "Priya", "Tomasz", "Leila", "Kwame", "Ingrid",
    "Diego", "Mei", "Oluwaseun", "Sven", "Farah", "Nikolai", "Imani", "Hiroshi", "Elena", "Rafael",
    "Anika", "Tariq", "Sofia", "Joaquin", "Freya", "Ravi", "Zainab", "Emil", "Chiara", "Kofi",
    "Astrid", "Arjun", "Noor", "Pablo", "Hana", "Dmitri", "Ayesha", "Malik", "Greta", "Tenzin",
    "Lucia", "Bongani", "Katarina", "Omar", "Signe", "Haruto", "Camila", "Idris", "Maren", "Vikram",
)

LAST_NAMES: tuple[str, ...] = (
    "Nakamura", "Okafor", "Lindqvist", "Castellano", "Kowalczyk", "Haddad", "Mensah", "Sorensen",
    "Takahashi", "Iyer", "Petrovic", "Abernathy", "Oyelaran", "Fontaine", "Brennan", "Varga",
    "Delacroix", "Mwangi", "Holmberg", "Quispe", "Rahimi", "Van Dijk", "Moreau", "Khumalo",
    "Ferreira", "Novak", "Tanaka", "Achterberg", "Bianchi", "Lindgren", "Adeyemi", "Markovic",
    "Esposito", "Kaur", "Szabo", "Ramirez", "Horvath", "Nyberg", "Chaudhry", "Olsen",
    "Salazar", "Yamamoto", "Kovacs", "Obi", "Whitfield", "Zielinski", "Ndlovu", "Arslan", "Dubois", "Hashimi",
)

CITIES: tuple[str, ...] = (
    "Thessaloniki", "Barcelona", "Melbourne", "Toronto", "Vancouver", "Montreal", "Chicago", "Boston",
    "Seattle", "Denver", "Dublin", "Edinburgh", "Manchester", "Liverpool", "Glasgow", "Amsterdam",
    "Rotterdam", "Brussels", "Copenhagen", "Stockholm", "Oslo", "Helsinki", "Berlin", "Munich",
    "Hamburg", "Frankfurt", "Vienna", "Prague", "Budapest", "Warsaw", "Lisbon", "Madrid",
    "Seville", "Valencia", "Milan", "Naples", "Florence", "Venice", "Athens", "Istanbul",
    "Cairo", "Nairobi", "Lagos", "Casablanca", "Johannesburg", "Mumbai", "Bangalore", "Chennai",
    "Karachi", "Dhaka", "Bangkok", "Singapore", "Jakarta", "Manila", "Hanoi", "Seoul",
    "Tokyo", "Osaka", "Kyoto", "Beijing", "Shanghai", "Sydney", "Auckland", "Adelaide",
    "Brisbane", "Lima", "Santiago", "Havana", "Montevideo", "Tehran", "Riyadh", "Dubai",
    "Beirut", "Tunis", "Accra", "Dakar", "Marseille", "Lyon", "Zurich", "Geneva",
)

PROFESSIONS: tuple[str, ...] = (
    "baker", "dentist", "pilot", "teacher", "nurse", "plumber", "carpenter", "journalist",
    "lawyer", "chef", "painter", "librarian", "pharmacist", "surgeon", "veterinarian", "photographer",
    "translator", "firefighter", "mechanic", "banker", "farmer", "tailor", "florist", "locksmith",
    "sculptor", "violinist", "gardener", "geologist", "botanist", "diplomat",
)

COLOURS: tuple[str, ...] = (
    "red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "black", "white",
    "grey", "teal", "turquoise", "magenta", "crimson", "indigo", "violet", "beige", "maroon", "navy",
)

LANGUAGES: tuple[str, ...] = (
    "Portuguese", "Swahili", "Finnish", "Hungarian", "Turkish", "Korean", "Vietnamese", "Polish",
    "Greek", "Dutch", "Hindi", "Arabic", "Hebrew", "Czech", "Icelandic", "Tagalog", "Welsh", "Basque",
)

INSTRUMENTS: tuple[str, ...] = (
    "cello", "violin", "piano", "trumpet", "flute", "clarinet", "saxophone", "harp", "oboe", "accordion",
    "banjo", "bassoon", "drums", "guitar", "trombone", "ukulele", "viola", "xylophone",
)

RELATIONS: dict[str, tuple[str, ...]] = {
    "lives in": CITIES,
    "was born in": CITIES,
    "works as a": PROFESSIONS,
    "'s favourite colour is": COLOURS,
    "speaks": LANGUAGES,
    "plays the": INSTRUMENTS,
}


def _objects_for(relation: str) -> tuple[str, ...]:
    objects = RELATIONS.get(relation)
    if objects is None:
        known = ", ".join(repr(r) for r in RELATIONS)
        raise UserError(f"no synthetic objects for relation {relation!r}; choose one of {known}")
    return objects


def _spread(pairs: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """Reorder ``pairs`` so that within each run of ``min(len(FIRST_NAMES), len(LAST_NAMES))``
    subjects no first name and no last name repeats (keys sit on the subject's last token, so
    shared surnames make facts interfere); otherwise keeps the shuffled order."""
    remaining, out = list(pairs), []
    used_first: set[int] = set()
    used_last: set[int] = set()
    while len(out) < n:
        pick = next((i for i, (f, l) in enumerate(remaining) if f not in used_first and l not in used_last), None)
        if pick is None:
            used_first, used_last = set(), set()
            continue
        first, last = remaining.pop(pick)
        out.append((first, last))
        used_first.add(first)
        used_last.add(last)
    return out


def _subjects(n: int, rng: random.Random) -> list[str]:
    capacity = len(FIRST_NAMES) * len(LAST_NAMES)
    if not 0 <= n <= capacity:
        raise UserError(f"the pool holds at most {capacity} unique subjects; asked for {n}")
    pairs = [(i // len(LAST_NAMES), i % len(LAST_NAMES)) for i in range(capacity)]
    rng.shuffle(pairs)
    return [f"{FIRST_NAMES[f]} {LAST_NAMES[l]}" for f, l in _spread(pairs, n)]


def fact_pool(n: int = 500, seed: int = 0, relation: str = "lives in") -> list[Fact]:
    """``n`` synthetic facts with unique subjects, deterministic in ``(seed, relation)``.

    Pools are prefix-stable: ``fact_pool(20) == fact_pool(500)[:20]`` for the same seed and relation.
    """
    objects = _objects_for(relation)
    subjects = _subjects(n, random.Random(f"memlog-pool-subjects:{seed}:{relation}"))
    rng = random.Random(f"memlog-pool-objects:{seed}:{relation}")
    return [Fact(subject, relation, objects[rng.randrange(len(objects))]) for subject in subjects]


MIXED_RELATIONS: tuple[str, ...] = ("lives in", "works as a", "speaks", "plays the")


def mixed_pool(n: int, seed: int = 0, relations: tuple[str, ...] = MIXED_RELATIONS, names: str = "unique") -> list[Fact]:
    """``n`` facts whose relations are drawn from ``relations``, deterministic in its arguments.

    ``names="unique"`` spreads first and last names as ``fact_pool`` does (no repeat within a
    run of 50); ``names="shared"`` takes the shuffled subjects as they come, so people share
    first names or surnames ("Aria Nakamura", "Yuki Nakamura") about as often as chance
    makes them. Subjects stay unique either way.
    """
    if names not in ("unique", "shared"):
        raise UserError(f"names must be 'unique' or 'shared', got {names!r}")
    for relation in relations:
        _objects_for(relation)
    rng = random.Random(f"memlog-mixed-pool:{seed}:{names}:{'|'.join(relations)}")
    if names == "unique":
        subjects = _subjects(n, rng)
    else:
        capacity = len(FIRST_NAMES) * len(LAST_NAMES)
        if not 0 <= n <= capacity:
            raise UserError(f"the pool holds at most {capacity} unique subjects; asked for {n}")
        pairs = [(i // len(LAST_NAMES), i % len(LAST_NAMES)) for i in range(capacity)]
        rng.shuffle(pairs)
        subjects = [f"{FIRST_NAMES[f]} {LAST_NAMES[l]}" for f, l in pairs[:n]]
    out = []
    for subject in subjects:
        relation = relations[rng.randrange(len(relations))]
        objects = RELATIONS[relation]
        out.append(Fact(subject, relation, objects[rng.randrange(len(objects))]))
    return out
