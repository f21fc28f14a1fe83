"""Word list and attribute table of the Twenty Questions environment.

`CATEGORIES` is the object list of ArCHer / LMRL-Gym's Twenty Questions: 157 objects in 17
categories, `;` separating the synonyms of one object (the first synonym names it).

`ATTRIBUTES` are the yes/no properties the rule-based oracle knows, read from
`data/twenty_questions_attributes.txt`: each is `(name, canonical question, phrasings)`, where
phrasings is a `|`-separated list of `kind:text` items (the file's header explains the kinds:
a noun, an adjective or other complement of "is it", a material, a verb phrase after "does it",
one after "can you"; a `!` in front asks the negation, e.g. "Is it natural?" is `!man_made`).

`WORD_ATTRIBUTES` gives the true attributes of every object: its category's defaults plus the
object's own entries, where `-name` removes a default. Every attribute not listed is false.

Conventions where common sense is split: produce (fruits and vegetables) "grows on a plant" but
is not itself "a plant" or "alive"; "Can you eat it?" means the object is food as it is (so
animals answer no); a tomato is a vegetable, not a fruit (as the word list files it); category
questions follow common sense rather than the list's filing (a toothbrush is not an office
supply; gloves are clothing); sizes compare the typical object.
"""

from __future__ import annotations

import pathlib

CATEGORIES: dict[str, tuple[str, ...]] = {
    "Sports": ("Basketball", "Football", "Baseball", "Soccer ball", "Golf ball", "Tennis ball",
               "Volleyball", "Tennis racket", "Baseball bat", "Helmet"),
    "Animals": ("Cat", "Dog", "Horse", "Cow", "Sheep", "Rabbit", "Lion", "Tiger", "Bear",
                "Elephant"),
    "Fruits": ("Apple", "Banana", "Orange", "Strawberry", "Grape", "Watermelon", "Pineapple",
               "Mango", "Cantaloupe", "Peach"),
    "Vehicles": ("Car", "Truck", "Motorcycle", "Boat", "Airplane;Plane", "Train", "Bus",
                 "Helicopter", "Scooter", "Ship"),
    "Clothes": ("Shirt", "Pants;Pant;Pair of pants", "Jacket", "Dress", "Skirt", "Belt",
                "Shoes;Shoe;Pair of shoes", "Boots;Boot;Pair of boots",
                "Socks;Sock;Pair of socks", "Hat", "Scarf"),
    "Electronics": ("Computer", "Smartphone", "Television;TV",
                    "Headphone;Headphones;Pair of headphones", "Monitor;Computer monitor",
                    "Camera", "Microwave;Microwave oven", "Refrigerator", "Blender",
                    "Computer keyboard;Keyboard"),
    "Musical Instruments": ("Piano", "Guitar", "Drum;Drums", "Violin", "Saxophone", "Flute",
                            "Trumpet", "Clarinet", "Harp", "Trombone"),
    "Furniture": ("Chair", "Table", "Bed", "Desk", "Couch", "Dresser", "Bookcase", "Nightstand",
                  "Mattress", "Pillow"),
    "Office Supplies": ("Pen", "Paper;Piece of paper", "Stapler", "Printer", "Calculator",
                        "Battery;Battery pack;Pack of batteries", "Toothbrush", "Toothpaste",
                        "Pencil", "Sharpie", "Scissors;Pair of scissors", "Key", "Diary",
                        "Calendar"),
    "Vegetables": ("Carrot", "Potato", "Broccoli", "Tomato", "Onion", "Spinach", "Corn",
                   "Peas;Pea", "Celery", "Cucumber"),
    "Art": ("Painting;Canvas painting;Oil painting;Watercolor painting", "Paintbrush",
            "Canvas;Painting canvas", "Eraser;Pencil eraser", "Marker",
            "Glue;Glue stick;Bottle of glue", "Sculpture"),
    "Kitchen Tools": ("Knife", "Spoon", "Fork", "Plate", "Bowl", "Cooking pot;Pot",
                      "Pan;Saucepan;Frying pan", "Cup", "Chopstick;Chopsticks;Pair of chopsticks",
                      "Whisk"),
    "Nature": ("Rock", "Tree", "Bush", "Mountain", "Forest", "Ocean", "Sea", "Lake", "River",
               "Meteorite", "Cactus"),
    "Toys": ("Lego;Lego set", "Doll;Toy doll;Plush doll", "Kite", "Puzzle;Jigsaw puzzle"),
    "Jewelry": ("Earring;Earrings;Pair of earrings", "Necklace", "Bracelet", "Ring", "Brooch",
                "Hairclip", "Pendant", "Watch", "Locket"),
    "Garden Supplies": ("Gloves;Glove;Pair of gloves", "Shovel", "Rake", "Watering can",
                        "Lawn mower"),
    "Tools": ("Hammer", "Screwdriver", "Wrench", "Saw", "Pliers;plier;Pair of pliers", "Drill"),
}

#: The 10-word subset of ArCHer's "Twenty Questions Subset" (every tenth word of the list).
SUBSET: tuple[str, ...] = ("Football", "Dog", "Banana", "Truck", "Pants", "Computer", "Piano",
                           "Chair", "Pen", "Scissors")

# Irregular plurals accepted in guesses, besides the regular ones (+s, +es, y->ies, f->ves).
IRREGULAR_PLURALS = {"cactus": "cacti", "knife": "knives"}

_ATTRIBUTE_FILE = pathlib.Path(__file__).parent / "data" / "twenty_questions_attributes.txt"


def _expand(phrasing: str) -> str:
  """Expands the shorthand kinds c: (a colour) and w: (a place) of the attribute file."""
  negation = "!" if phrasing.startswith("!") else ""
  kind, _, text = phrasing.lstrip("!").partition(":")
  if kind == "c":
    forms = [f"a:{text}", f"a:{text} in color", f"a:{text} colored", f"v:have {text} color"]
  elif kind == "w":
    forms = [f"a:found in {text}", f"a:kept in {text}", f"a:used in {text}",
             f"y:find it in {text}", f"y:keep it in {text}", f"y:use it in {text}"]
  else:
    forms = [f"{kind}:{text}"]
  return "|".join(negation + form for form in forms)


def _read_attributes() -> tuple[tuple[str, str, str], ...]:
  records: list[str] = []
  for line in _ATTRIBUTE_FILE.read_text(encoding="utf-8").splitlines():
    if not line.strip() or line.lstrip().startswith("#"):
      continue
    if line[0].isspace():
      records[-1] += line.strip()
    else:
      records.append(line.strip())
  attributes = []
  for record in records:
    name, question, phrasings = (field.strip() for field in record.split(" | ", 2))
    attributes.append((name, question, "|".join(_expand(p) for p in phrasings.split("|"))))
  return tuple(attributes)


#: (name, canonical question, "|"-separated phrasings) of every attribute, in the file's order.
ATTRIBUTES: tuple[tuple[str, str, str], ...] = _read_attributes()

# Attribute names true for every object of a category.
CATEGORY_DEFAULTS: dict[str, str] = {
    "Sports": "man_made used_for_sports used_outdoors handheld",
    "Animals": "is_animal is_mammal is_alive has_legs has_four_legs has_fur has_face "
               "moves_by_itself makes_noise used_outdoors bigger_than_a_breadbox",
    "Fruits": "is_edible is_fruit grows_on_plant found_in_kitchen handheld",
    "Vehicles": "man_made is_vehicle rideable has_engine has_motor made_of_metal used_outdoors "
                "bigger_than_a_breadbox bigger_than_a_person heavy makes_noise",
    "Clothes": "man_made is_clothing wearable handheld made_of_fabric is_soft",
    "Electronics": "man_made electronic needs_electricity",
    "Musical Instruments": "man_made is_instrument makes_noise bigger_than_a_breadbox",
    "Furniture": "man_made is_furniture bigger_than_a_breadbox",
    "Office Supplies": "man_made handheld",
    "Vegetables": "is_edible is_vegetable grows_on_plant found_in_kitchen handheld",
    "Art": "man_made art_supply handheld",
    "Kitchen Tools": "man_made kitchen_utensil found_in_kitchen handheld",
    "Nature": "used_outdoors",
    "Toys": "man_made is_toy handheld",
    "Jewelry": "man_made is_jewelry wearable handheld fits_in_pocket made_of_metal",
    "Garden Supplies": "man_made used_for_gardening used_outdoors handheld",
    "Tools": "man_made is_tool building_tool handheld made_of_metal has_handle",
}

_BIG = "bigger_than_a_breadbox bigger_than_a_person bigger_than_a_house"
_WATER = f"landform body_of_water is_liquid blue {_BIG}"

# Each object's attributes besides its category's defaults ("-name" removes a default).
WORD_ATTRIBUTES: dict[str, str] = {
    # Sports
    "Basketball": "is_ball is_round made_of_rubber orange_colored team_sport thrown",
    "Football": "is_ball oval made_of_leather brown team_sport thrown kicked",
    "Baseball": "is_ball is_round made_of_leather white team_sport thrown hit_with_something",
    "Soccer ball": "is_ball is_round team_sport kicked black_and_white",
    "Golf ball": "is_ball is_round white hit_with_something fits_in_pocket",
    "Tennis ball": "is_ball is_round yellow made_of_rubber hit_with_something fuzzy",
    "Volleyball": "is_ball is_round white team_sport",
    "Tennis racket": "has_strings used_to_hit_things has_handle bigger_than_a_breadbox",
    "Baseball bat": "made_of_wood used_to_hit_things team_sport long_and_thin has_handle "
                    "bigger_than_a_breadbox",
    "Helmet": "wearable worn_on_head protective made_of_plastic",
    # Animals
    "Cat": "is_pet eats_meat is_feline is_soft -used_outdoors",
    "Dog": "is_pet eats_meat is_soft -used_outdoors",
    "Horse": "farm_animal has_hooves has_mane rideable bigger_than_a_person heavy brown",
    "Cow": "farm_animal has_hooves gives_milk bigger_than_a_person heavy black_and_white",
    "Sheep": "farm_animal has_hooves has_wool is_soft white",
    "Rabbit": "is_pet hops is_soft -makes_noise -bigger_than_a_breadbox",
    "Lion": "wild_animal eats_meat is_feline has_mane lives_in_africa bigger_than_a_person heavy "
            "dangerous",
    "Tiger": "wild_animal eats_meat is_feline has_stripes bigger_than_a_person heavy dangerous "
             "orange_colored",
    "Bear": "wild_animal eats_meat bigger_than_a_person heavy dangerous brown",
    "Elephant": "wild_animal has_trunk lives_in_africa bigger_than_a_person heavy rideable gray "
                "-has_fur",
    # Fruits
    "Apple": "red is_round has_seeds grows_on_trees",
    "Banana": "yellow grows_on_trees tropical peeled is_soft",
    "Orange": "orange_colored is_round is_citrus has_seeds grows_on_trees peeled",
    "Strawberry": "red is_berry has_seeds is_soft fits_in_pocket",
    "Grape": "purple is_round has_seeds grows_on_vine fits_in_pocket",
    "Watermelon": "is_melon green has_stripes oval has_seeds grows_on_vine "
                  "bigger_than_a_breadbox -handheld",
    "Pineapple": "yellow tropical prickly peeled",
    "Mango": "tropical has_seeds grows_on_trees peeled",
    "Cantaloupe": "is_melon orange_colored is_round has_seeds grows_on_vine",
    "Peach": "is_round has_seeds grows_on_trees is_soft fuzzy",
    # Vehicles
    "Car": "has_wheels travels_on_roads",
    "Truck": "has_wheels travels_on_roads carries_cargo",
    "Motorcycle": "has_wheels two_wheels travels_on_roads",
    "Boat": "travels_on_water -made_of_metal",
    "Airplane": "has_wheels can_fly has_wings carries_many_people bigger_than_a_house",
    "Train": "has_wheels runs_on_rails carries_many_people carries_cargo bigger_than_a_house",
    "Bus": "has_wheels travels_on_roads carries_many_people",
    "Helicopter": "can_fly",
    "Scooter": "has_wheels two_wheels travels_on_roads -bigger_than_a_person",
    "Ship": "travels_on_water carries_many_people carries_cargo bigger_than_a_house",
    # Clothes
    "Shirt": "worn_on_upper_body bigger_than_a_breadbox",
    "Pants": "worn_on_legs has_legs bigger_than_a_breadbox",
    "Jacket": "worn_on_upper_body keeps_you_warm bigger_than_a_breadbox",
    "Dress": "worn_on_upper_body worn_on_legs bigger_than_a_breadbox",
    "Skirt": "worn_on_legs",
    "Belt": "has_buckle made_of_leather long_and_thin -made_of_fabric -is_soft",
    "Shoes": "worn_on_feet made_of_leather comes_in_pairs -made_of_fabric -is_soft",
    "Boots": "worn_on_feet made_of_leather comes_in_pairs keeps_you_warm -made_of_fabric "
             "-is_soft",
    "Socks": "worn_on_feet comes_in_pairs keeps_you_warm fits_in_pocket",
    "Hat": "worn_on_head keeps_you_warm",
    "Scarf": "worn_around_neck keeps_you_warm long_and_thin",
    # Electronics
    "Computer": "has_screen has_keys does_math makes_noise bigger_than_a_breadbox "
                "found_in_office",
    "Smartphone": "has_screen takes_pictures makes_calls tells_time fits_in_pocket handheld "
                  "makes_noise",
    "Television": "has_screen makes_noise bigger_than_a_breadbox",
    "Headphone": "wearable worn_on_head worn_on_ears handheld made_of_plastic makes_noise",
    "Monitor": "has_screen computer_accessory found_in_office bigger_than_a_breadbox",
    "Camera": "takes_pictures has_screen handheld",
    "Microwave": "appliance heats_food used_for_cooking found_in_kitchen bigger_than_a_breadbox "
                 "makes_noise made_of_metal",
    "Refrigerator": "appliance keeps_food_cold found_in_kitchen has_shelves used_for_storage "
                    "bigger_than_a_breadbox bigger_than_a_person heavy made_of_metal has_motor",
    "Blender": "appliance used_for_cooking used_for_mixing has_blade found_in_kitchen "
               "makes_noise has_motor",
    "Computer keyboard": "has_keys computer_accessory found_in_office handheld made_of_plastic "
                         "bigger_than_a_breadbox",
    # Musical instruments
    "Piano": "has_keys has_strings has_legs heavy bigger_than_a_person made_of_wood "
             "black_and_white",
    "Guitar": "has_strings plucked made_of_wood",
    "Drum": "percussion is_round hit_with_something",
    "Violin": "has_strings played_with_bow made_of_wood handheld",
    "Saxophone": "wind_instrument woodwind has_reed has_keys made_of_metal",
    "Flute": "wind_instrument woodwind has_keys made_of_metal long_and_thin handheld",
    "Trumpet": "wind_instrument brass_instrument made_of_metal handheld",
    "Clarinet": "wind_instrument woodwind has_reed has_keys made_of_wood long_and_thin handheld",
    "Harp": "has_strings plucked made_of_wood heavy",
    "Trombone": "wind_instrument brass_instrument has_slide made_of_metal",
    # Furniture
    "Chair": "has_legs has_four_legs used_for_sitting made_of_wood found_in_office",
    "Table": "has_legs has_four_legs made_of_wood heavy",
    "Bed": "has_legs has_four_legs used_for_sleeping found_in_bedroom made_of_wood "
           "bigger_than_a_person heavy",
    "Desk": "has_legs has_four_legs has_drawers used_for_storage found_in_office made_of_wood "
            "heavy",
    "Couch": "has_legs has_four_legs used_for_sitting made_of_fabric is_soft "
             "bigger_than_a_person heavy",
    "Dresser": "has_drawers used_for_storage found_in_bedroom made_of_wood heavy",
    "Bookcase": "has_shelves used_for_storage holds_books made_of_wood heavy",
    "Nightstand": "has_legs has_four_legs has_drawers used_for_storage found_in_bedroom "
                  "made_of_wood",
    "Mattress": "used_for_sleeping found_in_bedroom is_soft made_of_fabric bigger_than_a_person "
                "heavy",
    "Pillow": "used_for_sleeping found_in_bedroom is_soft made_of_fabric handheld -is_furniture",
    # Office supplies
    "Pen": "office_supply used_for_writing uses_ink long_and_thin fits_in_pocket "
           "made_of_plastic found_in_office",
    "Paper": "office_supply written_on made_of_paper found_in_office white",
    "Stapler": "office_supply made_of_metal has_hinge fastens_things found_in_office",
    "Printer": "computer_accessory prints uses_ink electronic needs_electricity found_in_office "
               "made_of_plastic bigger_than_a_breadbox makes_noise -handheld",
    "Calculator": "office_supply does_math has_screen electronic needs_electricity "
                  "made_of_plastic fits_in_pocket found_in_office",
    "Battery": "stores_energy made_of_metal fits_in_pocket",
    "Toothbrush": "for_teeth has_bristles has_handle made_of_plastic long_and_thin "
                  "found_in_bathroom",
    "Toothpaste": "for_teeth found_in_bathroom white",
    "Pencil": "office_supply used_for_writing made_of_wood long_and_thin fits_in_pocket "
              "found_in_office",
    "Sharpie": "office_supply used_for_writing uses_ink brand_name long_and_thin fits_in_pocket "
               "made_of_plastic",
    "Scissors": "office_supply is_tool used_for_cutting has_blade has_hinge has_handle "
                "made_of_metal found_in_office",
    "Key": "opens_locks made_of_metal fits_in_pocket",
    "Diary": "is_book has_pages written_on made_of_paper",
    "Calendar": "has_pages written_on made_of_paper tells_time hangs_on_wall office_supply "
                "found_in_office",
    # Vegetables
    "Carrot": "orange_colored grows_underground long_and_thin",
    "Potato": "brown grows_underground oval usually_cooked",
    "Broccoli": "green usually_cooked",
    "Tomato": "red is_round has_seeds grows_on_vine",
    "Onion": "is_round grows_underground peeled usually_cooked",
    "Spinach": "green has_leaves",
    "Corn": "yellow usually_cooked",
    "Peas": "green is_round usually_cooked fits_in_pocket grows_on_vine",
    "Celery": "green has_leaves long_and_thin",
    "Cucumber": "green has_seeds grows_on_vine",
    # Art
    "Painting": "-art_supply work_of_art hangs_on_wall bigger_than_a_breadbox -handheld",
    "Paintbrush": "has_bristles has_handle long_and_thin made_of_wood",
    "Canvas": "written_on made_of_fabric bigger_than_a_breadbox",
    "Eraser": "made_of_rubber office_supply fits_in_pocket found_in_office",
    "Marker": "used_for_writing uses_ink office_supply long_and_thin fits_in_pocket "
              "made_of_plastic",
    "Glue": "sticky fastens_things is_liquid office_supply fits_in_pocket",
    "Sculpture": "-art_supply work_of_art made_of_stone heavy bigger_than_a_breadbox -handheld",
    # Kitchen tools
    "Knife": "has_blade used_for_cutting used_for_eating made_of_metal has_handle dangerous",
    "Spoon": "used_for_eating used_for_scooping used_for_mixing made_of_metal has_handle",
    "Fork": "used_for_eating has_prongs made_of_metal has_handle",
    "Plate": "used_for_eating is_round made_of_glass_or_ceramic",
    "Bowl": "used_for_eating is_round holds_liquid made_of_glass_or_ceramic",
    "Cooking pot": "used_for_cooking heats_food holds_liquid made_of_metal has_handle is_round",
    "Pan": "used_for_cooking heats_food made_of_metal has_handle is_round",
    "Cup": "used_for_drinking holds_liquid made_of_glass_or_ceramic has_handle",
    "Chopstick": "used_for_eating grips_things made_of_wood comes_in_pairs long_and_thin",
    "Whisk": "used_for_mixing used_for_cooking made_of_metal has_handle",
    # Nature
    "Rock": "made_of_stone gray handheld",
    "Tree": "is_alive is_plant has_leaves has_trunk made_of_wood green heavy "
            "bigger_than_a_breadbox bigger_than_a_person",
    "Bush": "is_alive is_plant has_leaves green bigger_than_a_breadbox",
    "Mountain": f"landform made_of_stone heavy {_BIG}",
    "Forest": f"landform has_leaves green {_BIG}",
    "Ocean": f"{_WATER} salty bigger_than_a_sea makes_noise",
    "Sea": f"{_WATER} salty makes_noise",
    "Lake": _WATER,
    "River": f"{_WATER} flows long_and_thin makes_noise",
    "Meteorite": "from_space made_of_stone made_of_metal handheld",
    "Cactus": "is_alive is_plant prickly found_in_desert green",
    # Toys
    "Lego": "made_of_plastic many_pieces brand_name",
    "Doll": "has_legs has_face looks_like_a_person is_soft made_of_fabric",
    "Kite": "can_fly made_of_fabric has_strings used_outdoors bigger_than_a_breadbox",
    "Puzzle": "many_pieces made_of_paper",
    # Jewelry
    "Earring": "worn_on_ears comes_in_pairs",
    "Necklace": "worn_around_neck",
    "Bracelet": "worn_on_hand_or_wrist is_round",
    "Ring": "worn_on_hand_or_wrist worn_on_finger is_round",
    "Brooch": "pinned_to_clothing",
    "Hairclip": "worn_on_head worn_in_hair",
    "Pendant": "worn_around_neck hangs_from_chain",
    "Watch": "worn_on_hand_or_wrist tells_time needs_electricity",
    "Locket": "worn_around_neck hangs_from_chain holds_a_picture has_hinge",
    # Garden supplies
    "Gloves": "is_clothing wearable worn_on_hand_or_wrist comes_in_pairs made_of_fabric "
              "keeps_you_warm protective is_soft fits_in_pocket",
    "Shovel": "is_tool used_for_scooping made_of_metal has_handle bigger_than_a_breadbox",
    "Rake": "is_tool has_prongs used_on_lawn made_of_metal has_handle bigger_than_a_breadbox",
    "Watering can": "waters_plants holds_liquid has_handle made_of_plastic",
    "Lawn mower": "is_tool has_wheels has_engine has_motor has_blade used_for_cutting "
                  "used_on_lawn made_of_metal makes_noise heavy bigger_than_a_breadbox dangerous "
                  "-handheld",
    # Tools
    "Hammer": "used_to_hit_things",
    "Screwdriver": "turns_screws long_and_thin",
    "Wrench": "grips_things -has_handle",
    "Saw": "used_for_cutting has_blade dangerous bigger_than_a_breadbox",
    "Pliers": "grips_things has_hinge",
    "Drill": "turns_screws power_tool needs_electricity has_motor makes_noise",
}
