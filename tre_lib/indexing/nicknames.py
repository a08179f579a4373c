"""Nickname table: canonical given name -> the short forms people write instead.

Used by :func:`tre_lib.indexing.normalise.canonical_given_name` to bring "Bob" and "Robert" to one key,
and by the synthetic data generator to corrupt names the way real registers are corrupted. Variants that
could belong to two canonical names (e.g. "alex" for Alexander and Alexandra) are left out on purpose:
mapping them would merge men and women, and the Jaro-Winkler comparison already scores them as close.
"""

from __future__ import annotations

NICKNAMES: dict[str, tuple[str, ...]] = {
    "robert": ("bob", "rob", "bobby", "robbie"),
    "william": ("bill", "will", "billy", "liam"),
    "richard": ("dick", "rich", "rick", "richie"),
    "elizabeth": ("liz", "beth", "lizzie", "betty", "eliza"),
    "margaret": ("maggie", "peggy", "meg"),
    "katherine": ("kate", "kathy", "katie"),
    "catherine": ("cathy", "cath"),
    "james": ("jim", "jimmy", "jamie"),
    "john": ("johnny", "jon"),
    "thomas": ("tom", "tommy"),
    "michael": ("mike", "mick", "mikey"),
    "christopher": ("chris", "kit"),
    "anthony": ("tony",),
    "alexander": ("xander", "sandy"),
    "alexandra": ("lexi", "sandra"),
    "benjamin": ("ben", "benny"),
    "samuel": ("sam", "sammy"),
    "samantha": ("sammie",),
    "daniel": ("dan", "danny"),
    "matthew": ("matt",),
    "nicholas": ("nick", "nicky"),
    "nicola": ("nikki",),
    "joseph": ("joe", "joey"),
    "edward": ("ed", "eddie", "ted", "ned"),
    "steven": ("steve",),
    "stephen": ("stevie",),
    "andrew": ("andy", "drew"),
    "peter": ("pete",),
    "timothy": ("tim", "timmy"),
    "jonathan": ("jonny",),
    "frederick": ("fred", "freddie", "freddy"),
    "theodore": ("theo", "teddy"),
    "oliver": ("ollie", "olly"),
    "harrison": ("harris",),
    "charles": ("charlie", "chas"),
    "patricia": ("pat", "patty", "trish"),
    "jennifer": ("jen", "jenny"),
    "rebecca": ("becky", "becca"),
    "victoria": ("vicky", "tori"),
    "deborah": ("debbie", "debs"),
    "susan": ("sue", "suzy"),
    "jacqueline": ("jackie",),
    "christine": ("chrissie",),
    "abigail": ("abby", "abi"),
    "dorothy": ("dot", "dotty"),
    "barbara": ("barbie", "babs"),
    "isabella": ("bella", "izzy"),
    "eleanor": ("ellie", "nell"),
    "florence": ("flo", "florrie"),
    "matilda": ("tilly", "mattie"),
    "harriet": ("hattie",),
    "joshua": ("josh",),
    "zachary": ("zach", "zak"),
    "gabriel": ("gabe",),
    "kenneth": ("ken", "kenny"),
    "philip": ("phil",),
    "patrick": ("paddy",),
    "louise": ("lou",),
    "rachel": ("rach",),
    "lauren": ("laurie",),
    "gareth": ("gaz",),
    "hamish": ("hame",),
}

# Reverse look-up built once: variant -> canonical.
CANONICAL_OF: dict[str, str] = {
    variant: canonical for canonical, variants in NICKNAMES.items() for variant in variants
}
