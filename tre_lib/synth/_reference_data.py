"""Small, hand-made lookup lists the synthetic world is drawn from.

The lists are deliberately short (hundreds, not thousands, of names) so the package stays small; names are
drawn with a Zipf-like weight so that common names collide the way they do in real registers, which is what
makes probabilistic matching non-trivial. Codes look like ONS/Companies House codes but the data is
synthetic: no row describes a real person or business.
"""

from __future__ import annotations

# Given names: a mix of names common across age bands in England and Wales, with a few that carry
# diacritics or apostrophes so that normalisation has something to do.
MALE_GIVEN_NAMES: tuple[str, ...] = tuple(
    """Oliver George Harry Jack Jacob Noah Charlie Muhammad Thomas Oscar William James Henry Leo Alfie
    Joshua Freddie Archie Ethan Isaac Alexander Joseph Edward Samuel Max Daniel Arthur Lucas Mohammed Logan
    Theo Harrison Benjamin Mason Sebastian Finley Adam Dylan Zachary Riley Teddy Theodore David Toby Jake
    Louie Elijah Reuben Arlo Hugo Luca Jaxon Matthew Harvey Reggie Michael Harley Jude Albert Tommy Luke
    Stanley Jenson Frankie Jayden Gabriel Elliot Mohammad Ronnie Charles Louis Frederick Nathan Lewis Rory
    Dexter Robert John Richard Christopher Anthony Mark Paul Steven Andrew Kenneth Peter Stephen Ian Gary
    Kevin Simon Graham Colin Patrick Seán Brian Philip Nicholas Timothy Jonathan Gareth Rhys Dafydd Angus
    Hamish Kwame Tariq Imran Rajesh Wojciech Piotr""".split()
)
FEMALE_GIVEN_NAMES: tuple[str, ...] = tuple(
    """Olivia Amelia Isla Ava Emily Isabella Mia Poppy Ella Lily Sophia Sophie Grace Evie Freya Charlotte
    Ivy Florence Willow Daisy Jessica Alice Sienna Chloé Zoë Ruby Elizabeth Margaret Catherine Katherine
    Susan Jennifer Patricia Deborah Rebecca Victoria Samantha Alexandra Abigail Jacqueline Christine Helen
    Sarah Emma Laura Hannah Rachel Amy Lucy Lauren Megan Natalie Nicola Karen Julie Tracey Joanne Michelle
    Claire Lisa Kelly Gemma Louise Anne Mary Jean Dorothy Barbara Siân Aoife Niamh Fatima Aisha Maryam
    Zara Priya Amira Harriet Eleanor Matilda Phoebe Esme Rosie Erin Holly Millie Scarlett Layla Maisie Eva
    Imogen Elsie Heidi Maya Bethany Jasmine Agnieszka Oluwaseun Mei Renée""".split()
)

# Family names, most common first (rank drives the Zipf weight).
FAMILY_NAMES: tuple[str, ...] = tuple(
    """Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson Thompson Wright
    Walker White Edwards Hughes Green Hall Lewis Harris Clarke Patel Jackson Wood Turner Martin Cooper Hill
    Ward Morris Moore Clark Lee King Baker Harrison Morgan Allen James Scott Phillips Watson Davis Parker
    Price Bennett Young Griffiths Mitchell Kelly Cook Carter Richardson Bailey Collins Bell Shaw Murphy
    Miller Cox Richards Khan Marshall Anderson Simpson Ellis Adams Singh Begum Wilkinson Foster Chapman
    Powell Webb Rogers Gray Mason Ali Hunt Hussain Campbell Matthews Owen Palmer Holmes Mills Barnes Knight
    Lloyd Butler Russell Barker Fisher Stevens Jenkins Murray Dixon Harvey Graham Pearson Ahmed Fletcher
    Walsh Kaur Gibson Howard Andrews Stewart Elliott Reynolds Saunders Payne Fox Ford Pearce Day Brooks West
    Lawrence Cole Atkinson Bradley Spencer Gill Dawson Ball Burton O'Brien Watts Rose Booth Perry Ryan
    Grant Wells Armstrong Francis Rees Hayes Hart Hudson Newman Barrett Webster Hunter Gregory Carr Lowe
    Page Marsh Riley Dunn Woods Parsons Berry Stone Reid Holland Hawkins Harding Porter Robertson Newton
    Oliver Reed Kennedy Williamson Bird Gardner Shah Dean Lane Cooke Bates Henderson Parry Burgess Bishop
    Walton Burns Nicholson Shepherd Ross Cross Long Freeman Warren Nicholls Hamilton Byrne Sutton McDonald
    Yates Hodgson Robson Curtis Hopkins O'Connor Harper Coleman Watkins Moss McCarthy Chambers O'Neill
    Griffin Sharp Hardy Wheeler Potter Osborne Johnston Gordon Doyle Wallace George Jordan Hutchinson Rowe
    Burke May Pritchard Gilbert Willis Higgins Read Miles Stevenson Stephenson Hammond Arnold Buckley
    Walters Hewitt Barber Nelson Slater Austin Sullivan Whitehead Mann Frost Lambert Stephens Blake Akhtar
    Lynch Goodwin Barton Woodward Thomson Cunningham Quinn Barnett Baxter Bibi Clayton Nash Greenwood
    Jennings Holt Kemp Poole Gallagher Bond Stokes Tucker Davidson Fowler Heath Norman Middleton Lawson
    Banks French Stanley Jarvis Gibbs Ferguson Hayward Carroll Douglas Dickinson Todd Barlow Peters Lucas
    Knowles Hartley Miah Simmons Morton Alexander Field Morrison Norris Townsend Preston Hancock Thornton
    Baldwin Burrows Briggs Storey Pike Jacobs Cartwright Davey Lord Ray Glover Henry Tomlinson Farmer
    Vincent Kirby Whittaker Smith-Jones Nowak Kowalski Okafor Nguyen Müller Ó'Súilleabháin""".split()
)

# Street names are built as <stem> <suffix>; stems and suffixes combine to a few thousand streets.
STREET_STEMS: tuple[str, ...] = tuple(
    """High Station Church Park Victoria Green Manor Mill School Queens Kings Grange Windsor Albert
    Springfield Highfield Stanley Richmond York Chestnut Oak Beech Elm Ash Willow Cedar Meadow Orchard
    Brook Riverside Hillside Castle Abbey Bridge Market North South East West Mount New London Main
    Alexandra Clarence Cromwell Nelson Wellington Marlborough Cambridge Oxford Newton Fairfield Woodland
    Heather Holly Rowan Poplar Sycamore Lime Hawthorn Kestrel Falcon Heron Lark Swallow Wren Linden
    Belmont Rosebery Salisbury Trafalgar Waterloo Jubilee Coronation Carlton Denmark Gladstone""".split()
)
STREET_SUFFIXES: tuple[str, ...] = (
    "Street",
    "Road",
    "Lane",
    "Avenue",
    "Close",
    "Drive",
    "Way",
    "Crescent",
    "Gardens",
    "Place",
    "Terrace",
    "Grove",
    "Court",
    "Walk",
    "Rise",
)

# Towns with a postcode area, a local authority (name, ONS-style code) and a region (name, code).
# Weights roughly follow population so that big cities hold more addresses.
TOWNS: tuple[tuple[str, str, str, str, str, str, float], ...] = (
    ("London", "E", "Tower Hamlets", "E09000030", "London", "E12000007", 3.0),
    ("London", "SE", "Southwark", "E09000028", "London", "E12000007", 3.0),
    ("London", "N", "Islington", "E09000019", "London", "E12000007", 2.5),
    ("London", "SW", "Wandsworth", "E09000032", "London", "E12000007", 3.0),
    ("London", "NW", "Camden", "E09000007", "London", "E12000007", 2.0),
    ("London", "W", "Ealing", "E09000009", "London", "E12000007", 2.5),
    ("Birmingham", "B", "Birmingham", "E08000025", "West Midlands", "E12000005", 4.0),
    ("Coventry", "CV", "Coventry", "E08000026", "West Midlands", "E12000005", 1.4),
    ("Leeds", "LS", "Leeds", "E08000035", "Yorkshire and The Humber", "E12000003", 3.0),
    ("Sheffield", "S", "Sheffield", "E08000019", "Yorkshire and The Humber", "E12000003", 2.2),
    ("York", "YO", "York", "E06000014", "Yorkshire and The Humber", "E12000003", 0.8),
    ("Hull", "HU", "Kingston upon Hull", "E06000010", "Yorkshire and The Humber", "E12000003", 1.0),
    ("Manchester", "M", "Manchester", "E08000003", "North West", "E12000002", 2.5),
    ("Liverpool", "L", "Liverpool", "E08000012", "North West", "E12000002", 2.0),
    ("Preston", "PR", "Preston", "E07000123", "North West", "E12000002", 0.6),
    ("Newcastle upon Tyne", "NE", "Newcastle upon Tyne", "E08000021", "North East", "E12000001", 1.2),
    ("Sunderland", "SR", "Sunderland", "E08000024", "North East", "E12000001", 1.0),
    ("Nottingham", "NG", "Nottingham", "E06000018", "East Midlands", "E12000004", 1.3),
    ("Leicester", "LE", "Leicester", "E06000016", "East Midlands", "E12000004", 1.4),
    ("Derby", "DE", "Derby", "E06000015", "East Midlands", "E12000004", 1.0),
    ("Norwich", "NR", "Norwich", "E07000148", "East of England", "E12000006", 0.6),
    ("Cambridge", "CB", "Cambridge", "E07000008", "East of England", "E12000006", 0.5),
    ("Peterborough", "PE", "Peterborough", "E06000031", "East of England", "E12000006", 0.8),
    ("Southampton", "SO", "Southampton", "E06000045", "South East", "E12000008", 1.0),
    ("Brighton", "BN", "Brighton and Hove", "E06000043", "South East", "E12000008", 1.1),
    ("Oxford", "OX", "Oxford", "E07000178", "South East", "E12000008", 0.6),
    ("Reading", "RG", "Reading", "E06000038", "South East", "E12000008", 0.6),
    ("Bristol", "BS", "Bristol, City of", "E06000023", "South West", "E12000009", 1.8),
    ("Plymouth", "PL", "Plymouth", "E06000026", "South West", "E12000009", 1.0),
    ("Exeter", "EX", "Exeter", "E07000041", "South West", "E12000009", 0.5),
    ("Cardiff", "CF", "Cardiff", "W06000015", "Wales", "W92000004", 1.4),
    ("Swansea", "SA", "Swansea", "W06000011", "Wales", "W92000004", 0.9),
    ("Glasgow", "G", "Glasgow City", "S12000049", "Scotland", "S92000003", 2.4),
    ("Edinburgh", "EH", "City of Edinburgh", "S12000036", "Scotland", "S92000003", 2.0),
    ("Aberdeen", "AB", "Aberdeen City", "S12000033", "Scotland", "S92000003", 0.8),
    ("Belfast", "BT", "Belfast", "N09000003", "Northern Ireland", "N92000002", 1.3),
)

# Letters allowed in the final two characters of a UK postcode (C I K M O V are never used there).
POSTCODE_UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"

# Words businesses are named from, and the legal suffixes whose variants corrupt business names.
BUSINESS_WORDS: tuple[str, ...] = tuple(
    """Acme Apex Atlas Beacon Bright Castle Cedar Crown Delta Eagle Evergreen Falcon Globe Granite
    Harbour Horizon Iron Jubilee Keystone Lighthouse Maple Meridian Northern Oak Orbit Phoenix Pinnacle
    Premier Quantum Regent Riverside Sapphire Sterling Summit Thistle Titan Unity Vanguard Victory Western
    Willow Zenith Albion Britannia Caledonian Cambrian Pennine Severn Thames Mercia Wessex""".split()
)
BUSINESS_NOUNS: tuple[str, ...] = tuple(
    """Toys Electrical Appliances Trading Imports Supplies Products Manufacturing Engineering Textiles
    Cosmetics Furniture Lighting Batteries Cycles Scooters Kitchenware Garden Leisure Baby Nursery
    Hardware Tools Plastics Distribution Retail Wholesale Home Outdoor Sports""".split()
)
LEGAL_SUFFIXES: tuple[str, ...] = ("Ltd", "Limited", "PLC", "LLP", "& Co Ltd", "Holdings Ltd", "UK Ltd")

# SIC 2007 codes (5 digits) with descriptions: a slice relevant to consumer products and labour statistics.
SIC_CODES: tuple[tuple[str, str], ...] = (
    ("10710", "Manufacture of bread; fresh pastry goods and cakes"),
    ("13921", "Manufacture of soft furnishings"),
    ("14190", "Manufacture of other wearing apparel and accessories"),
    ("20420", "Manufacture of perfumes and toilet preparations"),
    ("22290", "Manufacture of other plastic products"),
    ("27400", "Manufacture of electric lighting equipment"),
    ("27510", "Manufacture of electric domestic appliances"),
    ("27200", "Manufacture of batteries and accumulators"),
    ("30920", "Manufacture of bicycles and invalid carriages"),
    ("31090", "Manufacture of other furniture"),
    ("32400", "Manufacture of games and toys"),
    ("32990", "Other manufacturing n.e.c."),
    ("41202", "Construction of domestic buildings"),
    ("45112", "Sale of used cars and light motor vehicles"),
    ("46190", "Agents involved in the sale of a variety of goods"),
    ("46431", "Wholesale of audio tapes, records, CDs and video tapes"),
    ("46499", "Wholesale of household goods (other than musical instruments) n.e.c."),
    ("47190", "Other retail sale in non-specialised stores"),
    ("47540", "Retail sale of electrical household appliances in specialised stores"),
    ("47650", "Retail sale of games and toys in specialised stores"),
    ("47910", "Retail sale via mail order houses or via Internet"),
    ("49410", "Freight transport by road"),
    ("55100", "Hotels and similar accommodation"),
    ("56101", "Licensed restaurants"),
    ("62012", "Business and domestic software development"),
    ("64191", "Banks"),
    ("68209", "Other letting and operating of own or leased real estate"),
    ("69201", "Accounting and auditing activities"),
    ("85200", "Primary education"),
    ("86101", "Hospital activities"),
    ("86210", "General medical practice activities"),
    ("87100", "Residential nursing care facilities"),
    ("88100", "Social work activities without accommodation for the elderly and disabled"),
    ("96020", "Hairdressing and other beauty treatment"),
)

# A small hierarchical product classification (division > group > class), CPA-like.
PRODUCT_CLASSIFICATION: tuple[tuple[str, str, str | None], ...] = (
    ("27", "Electrical equipment", None),
    ("27.2", "Batteries and accumulators", "27"),
    ("27.20", "Lithium-ion batteries and packs", "27.2"),
    ("27.4", "Electric lighting equipment", "27"),
    ("27.40", "Lamps and lighting fittings", "27.4"),
    ("27.5", "Domestic appliances", "27"),
    ("27.51", "Electric domestic appliances", "27.5"),
    ("27.52", "Non-electric domestic cooking and heating equipment", "27.5"),
    ("30", "Other transport equipment", None),
    ("30.9", "Transport equipment n.e.c.", "30"),
    ("30.92", "Bicycles, e-bikes and e-scooters", "30.9"),
    ("31", "Furniture", None),
    ("31.0", "Furniture", "31"),
    ("31.01", "Office and shop furniture", "31.0"),
    ("31.09", "Other furniture including nursery furniture", "31.0"),
    ("32", "Other manufactured goods", None),
    ("32.4", "Games and toys", "32"),
    ("32.40", "Games and toys, including electronic toys", "32.4"),
    ("32.9", "Manufactured goods n.e.c.", "32"),
    ("32.99", "Personal protective equipment and other goods", "32.9"),
    ("20", "Chemicals and chemical products", None),
    ("20.4", "Soap, detergents, cosmetics", "20"),
    ("20.42", "Perfumes and toilet preparations", "20.4"),
    ("14", "Wearing apparel", None),
    ("14.1", "Wearing apparel, except fur", "14"),
    ("14.19", "Children's clothing and accessories", "14.1"),
)

# ICD-10-like diagnosis codes for hospital episodes.
DIAGNOSIS_CODES: tuple[str, ...] = (
    "J18.9",
    "I21.9",
    "I50.9",
    "K35.8",
    "N39.0",
    "S72.0",
    "E11.9",
    "J44.1",
    "O80.0",
    "R07.4",
    "K80.2",
    "C50.9",
    "F32.9",
    "I63.9",
    "A09.9",
)

# Harmonised standards a product test can fail against.
PRODUCT_STANDARDS: tuple[str, ...] = (
    "BS EN 71-1",
    "BS EN 71-3",
    "BS EN 62115",
    "BS EN 60335-1",
    "BS EN 62133-2",
    "BS EN 15194",
    "BS EN 1888-1",
    "BS EN 716-1",
    "BS EN 14682",
    "BS 1363-1",
)
FAILURE_REASONS: tuple[str, ...] = (
    "small parts detached",
    "excess lead content",
    "battery overheating",
    "insufficient insulation",
    "non-compliant plug",
    "drawstring hazard",
    "structural failure under load",
    "flammability",
    "missing warnings",
    "excess phthalates",
)
