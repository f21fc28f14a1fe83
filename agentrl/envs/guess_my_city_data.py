"""Facts for Guess My City: 100 cities with their attributes, and the world's place names.

The city list is LMRL-Gym's `global_cities.txt` (100 large cities, in its order), with modern
or corrected spellings; the spellings used there (Bombay, Madras, Calcutta, Kiev, Pusan, Taega,
Inchon, Haerbin, Pyong Yang, Kinshaha, Havanna, Bucuresti, Xian) are kept as aliases, so a
guess in either spelling counts. Countries follow common usage (Taipei is in Taiwan, Abidjan in
Côte d'Ivoire, Kinshasa in the Democratic Republic of the Congo).

Attributes (authored here):
  * population: rounded recent estimates of the urban area in millions (UN World Urbanization
    Prospects style agglomerations); for a city inside a bigger metropolis (Yokohama, Giza,
    Incheon, Quezon City, Bogor, Malang, Sukabumi, Cirebon, Surabaya, Semarang, Bandung, Medan)
    the city itself. Answers round them, so they only need to be about right.
  * coast: "coastal" (on the sea or an estuary of it), "near" (the sea or the city's own port
    district is within roughly 50 km, but the city centre is not on it) or "inland". Lakes
    (Chicago, Toronto) do not count as the sea.
  * climate: a simplified Köppen group: tropical (A), desert (BW), semi-arid (BS),
    mediterranean (Cs), humid subtropical (Cfa/Cwa), oceanic (Cfb), continental (D, and cold
    winter borderline cases such as Ankara and Tashkent), highland (subtropical highland Cwb/Cfb
    at altitude).
  * hemisphere: "N" or "S" by latitude; capital: the national capital today.
  * landmarks, food: phrases that never contain the city's name or aliases.
"""

from __future__ import annotations

from typing import NamedTuple

COASTAL, NEAR, INLAND = "coastal", "near", "inland"
TROP, DESERT, SEMI, MED, SUB, OCEAN, CONT, HIGH = (
    "tropical", "desert", "semi-arid", "mediterranean", "humid subtropical", "oceanic",
    "continental", "highland")
CLIMATES = (TROP, DESERT, SEMI, MED, SUB, OCEAN, CONT, HIGH)
CONTINENTS = ("Asia", "Europe", "Africa", "North America", "South America", "Oceania")


class City(NamedTuple):
  """One city and the facts the oracle answers with."""

  name: str
  country: str
  continent: str
  population: float  # millions
  coast: str
  languages: tuple[str, ...]
  climate: str
  hemisphere: str  # "N" or "S"
  capital: bool
  landmarks: str
  food: str
  aliases: tuple[str, ...] = ()

  @property
  def task_id(self) -> str:
    return f"{self.name}, {self.country}"


_C = City
CITIES: tuple[City, ...] = (
  _C("Seoul", "South Korea", "Asia", 10.0, NEAR, ("Korean",), CONT, "N", True,
     "Gyeongbokgung Palace and the Namsan Tower", "bibimbap and Korean barbecue"),
  _C("São Paulo", "Brazil", "South America", 22.0, NEAR, ("Portuguese",), SUB, "S", False,
     "Avenida Paulista and Ibirapuera Park", "pizza and mortadella sandwiches"),
  _C("Mumbai", "India", "Asia", 20.4, COASTAL, ("Marathi", "Hindi", "English"), TROP, "N",
     False, "the Gateway of India and Marine Drive", "vada pav and pav bhaji", ("bombay",)),
  _C("Jakarta", "Indonesia", "Asia", 10.8, COASTAL, ("Indonesian",), TROP, "S", True,
     "the National Monument (Monas) and the Istiqlal Mosque", "nasi goreng and kerak telor"),
  _C("Karachi", "Pakistan", "Asia", 16.1, COASTAL, ("Urdu",), DESERT, "N", False,
     "the Mazar-e-Quaid (Jinnah's tomb) and Clifton Beach", "biryani and nihari"),
  _C("Moscow", "Russia", "Europe", 12.5, INLAND, ("Russian",), CONT, "N", True,
     "the Kremlin, Red Square and St. Basil's Cathedral", "borscht and blini"),
  _C("Istanbul", "Turkey", "Europe", 15.2, COASTAL, ("Turkish",), MED, "N", False,
     "the Hagia Sophia, the Blue Mosque and the Bosphorus strait", "doner kebab and baklava",
     ("constantinople",)),
  _C("Mexico City", "Mexico", "North America", 21.8, INLAND, ("Spanish",), HIGH, "N", True,
     "the Zócalo square and the pyramids of Teotihuacan nearby", "tacos al pastor and tamales",
     ("ciudad de mexico", "cdmx")),
  _C("Shanghai", "China", "Asia", 27.1, COASTAL, ("Mandarin", "Wu Chinese"), SUB, "N",
     False, "the Bund waterfront and the Oriental Pearl Tower", "xiaolongbao soup dumplings"),
  _C("Tokyo", "Japan", "Asia", 37.4, COASTAL, ("Japanese",), SUB, "N", True,
     "the Shibuya Crossing, the Senso-ji temple and the Skytree tower", "sushi and ramen"),
  _C("New York", "United States", "North America", 18.8, COASTAL, ("English", "Spanish"), SUB,
     "N", False, "the Statue of Liberty, Times Square and Central Park",
     "bagels and thin-crust pizza slices", ("new york city", "nyc")),
  _C("Bangkok", "Thailand", "Asia", 10.5, NEAR, ("Thai",), TROP, "N", True,
     "the Grand Palace and Wat Arun, the Temple of Dawn", "pad thai and tom yum soup",
     ("krung thep",)),
  _C("Beijing", "China", "Asia", 20.5, INLAND, ("Mandarin",), CONT, "N", True,
     "the Forbidden City, Tiananmen Square and the Great Wall nearby", "roast duck and jianbing",
     ("peking", "peiping")),
  _C("Delhi", "India", "Asia", 30.3, INLAND, ("Hindi", "English"), SUB, "N", True,
     "the Red Fort, India Gate and the Qutub Minar", "butter chicken and chaat"),
  _C("London", "United Kingdom", "Europe", 9.3, INLAND, ("English",), OCEAN, "N", True,
     "Big Ben, Buckingham Palace and Tower Bridge", "fish and chips, and pie and mash"),
  _C("Hong Kong", "China", "Asia", 7.5, COASTAL, ("Cantonese", "English"), SUB, "N", False,
     "Victoria Harbour and Victoria Peak", "dim sum and egg tarts"),
  _C("Cairo", "Egypt", "Africa", 20.9, INLAND, ("Arabic",), DESERT, "N", True,
     "the Egyptian Museum, the Citadel of Saladin and the Khan el-Khalili bazaar",
     "koshari and ful medames"),
  _C("Tehran", "Iran", "Asia", 9.1, INLAND, ("Persian",), SEMI, "N", True,
     "the Azadi Tower and the Golestan Palace", "chelow kebab (rice with grilled kebab)"),
  _C("Bogotá", "Colombia", "South America", 11.0, INLAND, ("Spanish",), HIGH, "N", True,
     "Monserrate mountain and the Gold Museum", "ajiaco (chicken and potato soup)"),
  _C("Bandung", "Indonesia", "Asia", 2.5, INLAND, ("Indonesian", "Sundanese"), TROP, "S", False,
     "the Gedung Sate building and the Tangkuban Perahu volcano nearby", "batagor and siomay"),
  _C("Tianjin", "China", "Asia", 13.6, NEAR, ("Mandarin",), CONT, "N", False,
     "a Ferris wheel built on a bridge over the Hai River, and its Italian Style Town",
     "goubuli steamed buns and mahua (fried dough twists)"),
  _C("Lima", "Peru", "South America", 10.7, COASTAL, ("Spanish",), DESERT, "S", True,
     "the colonial Plaza Mayor and the Miraflores cliffs above the Pacific", "ceviche"),
  _C("Rio de Janeiro", "Brazil", "South America", 13.5, COASTAL, ("Portuguese",), TROP, "S",
     False, "Christ the Redeemer, Sugarloaf Mountain and Copacabana beach", "feijoada",
     ("rio",)),
  _C("Lahore", "Pakistan", "Asia", 12.6, INLAND, ("Punjabi", "Urdu"), SEMI, "N", False,
     "the Badshahi Mosque, the old walled city's fort and the Shalimar Gardens",
     "halwa puri and chargha (steamed and fried chicken)"),
  _C("Bogor", "Indonesia", "Asia", 1.1, INLAND, ("Indonesian", "Sundanese"), TROP, "S", False,
     "its great botanical gardens and a presidential palace", "asinan (pickled fruit)"),
  _C("Santiago", "Chile", "South America", 6.8, INLAND, ("Spanish",), MED, "S", True,
     "the Plaza de Armas and San Cristóbal Hill, with the Andes in view",
     "empanadas and pastel de choclo"),
  _C("Saint Petersburg", "Russia", "Europe", 5.5, COASTAL, ("Russian",), CONT, "N", False,
     "the Hermitage Museum in the Winter Palace, and its canals",
     "pyshki doughnuts and koryushka (smelt fish)",
     ("st petersburg", "st petersbourg", "petersburg", "leningrad")),
  _C("Shenyang", "China", "Asia", 7.2, INLAND, ("Mandarin",), CONT, "N", False,
     "the Mukden Palace and the Zhao Mausoleum", "laobian dumplings"),
  _C("Kolkata", "India", "Asia", 14.9, INLAND, ("Bengali", "Hindi", "English"), TROP, "N",
     False, "the Victoria Memorial and the Howrah Bridge", "rosogolla sweets and fish curry",
     ("calcutta",)),
  _C("Wuhan", "China", "Asia", 8.4, INLAND, ("Mandarin",), SUB, "N", False,
     "the Yellow Crane Tower and the East Lake", "hot dry noodles (reganmian)"),
  _C("Sydney", "Australia", "Oceania", 4.9, COASTAL, ("English",), SUB, "S", False,
     "the Opera House, the Harbour Bridge and Bondi Beach", "meat pies and pavlova"),
  _C("Guangzhou", "China", "Asia", 13.3, NEAR, ("Cantonese", "Mandarin"), SUB, "N", False,
     "the Chen Clan Ancestral Hall and a 600-metre TV tower on the Pearl River",
     "dim sum and roast goose"),
  _C("Singapore", "Singapore", "Asia", 5.9, COASTAL, ("English", "Malay", "Mandarin", "Tamil"),
     TROP, "N", True, "Marina Bay Sands, the Gardens by the Bay and the Merlion statue",
     "Hainanese chicken rice and chili crab"),
  _C("Chennai", "India", "Asia", 11.0, COASTAL, ("Tamil", "English"), TROP, "N", False,
     "Marina Beach and the Kapaleeshwarar Temple", "dosa and idli with filter coffee",
     ("madras",)),
  _C("Baghdad", "Iraq", "Asia", 7.1, INLAND, ("Arabic",), DESERT, "N", True,
     "the Al-Shaheed Monument and the banks of the Tigris", "masgouf (grilled carp)"),
  _C("Busan", "South Korea", "Asia", 3.5, COASTAL, ("Korean",), SUB, "N", False,
     "Haeundae Beach and the Gamcheon Culture Village", "dwaeji gukbap (pork soup) and milmyeon",
     ("pusan",)),
  _C("Los Angeles", "United States", "North America", 12.4, COASTAL, ("English", "Spanish"),
     MED, "N", False, "Hollywood, its hillside sign and the Santa Monica Pier",
     "fish tacos and Korean barbecue", ("l a",)),
  _C("Yokohama", "Japan", "Asia", 3.8, COASTAL, ("Japanese",), SUB, "N", False,
     "the Minato Mirai waterfront, the Landmark Tower and a large Chinatown",
     "Chinese pork buns and iekei ramen"),
  _C("Dhaka", "Bangladesh", "Asia", 21.0, INLAND, ("Bengali",), TROP, "N", True,
     "the Lalbagh Fort and the National Parliament House", "kacchi biryani and hilsa fish",
     ("dacca",)),
  _C("Berlin", "Germany", "Europe", 3.6, INLAND, ("German",), OCEAN, "N", True,
     "the Brandenburg Gate, the Reichstag and what is left of the Wall",
     "currywurst and doner kebab"),
  _C("Alexandria", "Egypt", "Africa", 5.3, COASTAL, ("Arabic",), DESERT, "N", False,
     "the Qaitbay Citadel and a great modern library on the Mediterranean",
     "fresh seafood and kebda (liver sandwiches)"),
  _C("Bangalore", "India", "Asia", 12.3, INLAND, ("Kannada", "English"), TROP, "N", False,
     "the Lalbagh and Cubbon Park gardens, and its tech industry",
     "masala dosa and bisi bele bath", ("bengaluru",)),
  _C("Malang", "Indonesia", "Asia", 0.85, INLAND, ("Indonesian", "Javanese"), TROP, "S", False,
     "the Jodipan rainbow village and Mount Bromo nearby", "bakso (meatball soup)"),
  _C("Hyderabad", "India", "Asia", 10.0, INLAND, ("Telugu", "Urdu"), TROP, "N", False,
     "the Charminar and the Golconda Fort", "biryani and haleem"),
  _C("Chongqing", "China", "Asia", 15.9, INLAND, ("Mandarin",), SUB, "N", False,
     "the Hongya Cave buildings and the cable car across the Yangtze", "spicy hot pot",
     ("chungking",)),
  _C("Ho Chi Minh City", "Vietnam", "Asia", 8.6, NEAR, ("Vietnamese",), TROP, "N", False,
     "the Ben Thanh Market and the Cu Chi tunnels nearby", "pho and banh mi",
     ("saigon", "ho chi minh", "hcmc")),
  _C("Harbin", "China", "Asia", 6.4, INLAND, ("Mandarin",), CONT, "N", False,
     "its Ice and Snow Festival and St. Sophia Cathedral",
     "red sausage and guobaorou (sweet and sour pork)", ("haerbin",)),
  _C("Ankara", "Turkey", "Asia", 5.1, INLAND, ("Turkish",), CONT, "N", True,
     "Anitkabir, the mausoleum of Atatürk, and the old citadel", "simit and kebabs"),
  _C("Buenos Aires", "Argentina", "South America", 15.2, COASTAL, ("Spanish",), SUB, "S", True,
     "the Obelisk, the colourful Caminito street and tango", "asado and dulce de leche"),
  _C("Chengdu", "China", "Asia", 9.1, INLAND, ("Mandarin",), SUB, "N", False,
     "the Giant Panda Breeding Base and Jinli Street", "Sichuan hot pot and mapo tofu"),
  _C("Ahmedabad", "India", "Asia", 8.1, INLAND, ("Gujarati", "Hindi"), SEMI, "N", False,
     "the Sabarmati Ashram of Gandhi and the Sidi Saiyyed Mosque", "dhokla and khakhra"),
  _C("Casablanca", "Morocco", "Africa", 3.8, COASTAL, ("Arabic", "French"), MED, "N", False,
     "the Hassan II Mosque above the Atlantic", "couscous and tagine"),
  _C("Chicago", "United States", "North America", 8.9, INLAND, ("English",), CONT, "N", False,
     "the Willis Tower and the Cloud Gate sculpture (the Bean)", "deep-dish pizza and hot dogs"),
  _C("Xi'an", "China", "Asia", 8.0, INLAND, ("Mandarin",), SUB, "N", False,
     "the Terracotta Army and the ancient city walls", "roujiamo and biangbiang noodles",
     ("xian",)),
  _C("Madrid", "Spain", "Europe", 6.6, INLAND, ("Spanish",), MED, "N", True,
     "the Prado Museum and the Royal Palace", "churros with chocolate and cocido stew"),
  _C("Surabaya", "Indonesia", "Asia", 3.0, COASTAL, ("Indonesian", "Javanese"), TROP, "S", False,
     "the Suramadu Bridge and the Heroes Monument", "rawon (black beef soup) and lontong balap"),
  _C("Pyongyang", "North Korea", "Asia", 3.1, INLAND, ("Korean",), CONT, "N", True,
     "the Juche Tower and the pyramid-shaped Ryugyong Hotel", "cold noodles (naengmyeon)",
     ("pyong yang",)),
  _C("Nanjing", "China", "Asia", 8.8, INLAND, ("Mandarin",), SUB, "N", False,
     "the Sun Yat-sen Mausoleum and the Ming city wall", "salted duck", ("nanking",)),
  _C("Kinshasa", "DR Congo", "Africa", 14.3, INLAND, ("French", "Lingala"), TROP, "S", True,
     "the rapids of the Congo River and the Boulevard du 30 Juin",
     "fufu and pondu (cassava leaves)", ("kinshaha", "leopoldville")),
  _C("Rome", "Italy", "Europe", 4.3, NEAR, ("Italian",), MED, "N", True,
     "the Colosseum, the Vatican and the Trevi Fountain", "carbonara and cacio e pepe pasta",
     ("roma",)),
  _C("Taipei", "Taiwan", "Asia", 2.7, NEAR, ("Mandarin", "Taiwanese Hokkien"), SUB, "N", True,
     "a 101-storey skyscraper and its night markets", "beef noodle soup and bubble tea"),
  _C("Osaka", "Japan", "Asia", 19.2, COASTAL, ("Japanese",), SUB, "N", False,
     "its 16th-century castle, the Dotonbori canal and Universal Studios Japan",
     "takoyaki and okonomiyaki"),
  _C("Kyiv", "Ukraine", "Europe", 3.0, INLAND, ("Ukrainian", "Russian"), CONT, "N", True,
     "St. Sophia's Cathedral and the Pechersk Lavra monastery", "borscht and varenyky",
     ("kiev",)),
  _C("Yangon", "Myanmar", "Asia", 5.3, NEAR, ("Burmese",), TROP, "N", False,
     "the golden Shwedagon Pagoda", "mohinga (fish noodle soup)", ("rangoon",)),
  _C("Toronto", "Canada", "North America", 6.2, INLAND, ("English",), CONT, "N", False,
     "the CN Tower and Niagara Falls nearby", "peameal bacon sandwiches and butter tarts"),
  _C("Zibo", "China", "Asia", 4.5, INLAND, ("Mandarin",), CONT, "N", False,
     "ruins of the ancient state of Qi, and its ceramics and glassware",
     "barbecue skewers wrapped in thin pancakes with scallions"),
  _C("Dalian", "China", "Asia", 5.6, COASTAL, ("Mandarin",), CONT, "N", False,
     "the huge Xinghai Square and its seaside roads and beaches", "fresh seafood"),
  _C("Daegu", "South Korea", "Asia", 2.2, INLAND, ("Korean",), SUB, "N", False,
     "the Seomun Market and Palgongsan mountain", "makchang (grilled pork intestines)",
     ("taegu", "taega")),
  _C("Addis Ababa", "Ethiopia", "Africa", 4.8, INLAND, ("Amharic",), HIGH, "N", True,
     "the National Museum with the Lucy skeleton, and the Merkato market", "injera with doro wat",
     ("addis",)),
  _C("Jinan", "China", "Asia", 5.1, INLAND, ("Mandarin",), CONT, "N", False,
     "the Baotu Spring and Daming Lake", "sweet and sour Yellow River carp", ("tsinan",)),
  _C("Salvador", "Brazil", "South America", 3.9, COASTAL, ("Portuguese",), TROP, "S", False,
     "the colourful Pelourinho old town and the Lacerda Elevator", "acarajé and moqueca",
     ("salvador da bahia",)),
  _C("Incheon", "South Korea", "Asia", 3.0, COASTAL, ("Korean",), CONT, "N", False,
     "the country's main international airport, Chinatown and Wolmido island",
     "jajangmyeon (black bean noodles)", ("inchon",)),
  _C("Semarang", "Indonesia", "Asia", 1.7, COASTAL, ("Indonesian", "Javanese"), TROP, "S",
     False, "Lawang Sewu (the Thousand Doors building) and the Sam Poo Kong temple",
     "lumpia spring rolls and bandeng presto (milkfish)"),
  _C("Giza", "Egypt", "Africa", 4.0, INLAND, ("Arabic",), DESERT, "N", False,
     "the Great Pyramids and the Sphinx", "koshari and ful medames", ("gizeh",)),
  _C("Changchun", "China", "Asia", 4.5, INLAND, ("Mandarin",), CONT, "N", False,
     "the palace of the last emperor from the Manchukuo era and its film studio",
     "guobaorou (sweet and sour pork)"),
  _C("Havana", "Cuba", "North America", 2.1, COASTAL, ("Spanish",), TROP, "N", True,
     "the Malecón seafront, the colonial old town and its classic American cars",
     "ropa vieja and Cuban sandwiches", ("havanna", "habana", "la habana")),
  _C("Nagoya", "Japan", "Asia", 9.6, COASTAL, ("Japanese",), SUB, "N", False,
     "its castle with golden dolphins and the Toyota headquarters nearby",
     "miso katsu and hitsumabushi (grilled eel on rice)"),
  _C("Belo Horizonte", "Brazil", "South America", 6.1, INLAND, ("Portuguese",), TROP, "S",
     False, "the Pampulha modernist buildings and the Mineirão stadium",
     "pão de queijo (cheese bread) and feijão tropeiro"),
  _C("Paris", "France", "Europe", 11.0, INLAND, ("French",), OCEAN, "N", True,
     "the Eiffel Tower, the Louvre and Notre-Dame", "croissants and baguettes"),
  _C("Tashkent", "Uzbekistan", "Asia", 2.5, INLAND, ("Uzbek", "Russian"), CONT, "N", True,
     "Amir Timur Square, the Chorsu Bazaar and its ornate metro stations", "plov (rice pilaf)"),
  _C("Fortaleza", "Brazil", "South America", 4.1, COASTAL, ("Portuguese",), TROP, "S", False,
     "the Iracema beach and the Dragão do Mar cultural centre", "crab and baião de dois"),
  _C("Sukabumi", "Indonesia", "Asia", 0.35, INLAND, ("Indonesian", "Sundanese"), TROP, "S",
     False, "Mount Gede Pangrango nearby and the surf beaches of Pelabuhan Ratu",
     "mochi (sticky rice cakes)"),
  _C("Cali", "Colombia", "South America", 2.8, INLAND, ("Spanish",), TROP, "N", False,
     "the Cristo Rey statue and its salsa dancing", "pandebono (cheese bread) and cholado",
     ("santiago de cali",)),
  _C("Guayaquil", "Ecuador", "South America", 3.0, NEAR, ("Spanish",), TROP, "S", False,
     "the Malecón 2000 riverfront and Las Peñas hill", "encebollado (fish soup)"),
  _C("Qingdao", "China", "Asia", 5.6, COASTAL, ("Mandarin",), CONT, "N", False,
     "its German-era old town, its brewery and beer festival, and the Zhanqiao Pier",
     "seafood and local beer", ("tsingtao",)),
  _C("Izmir", "Turkey", "Asia", 3.1, COASTAL, ("Turkish",), MED, "N", False,
     "the Konak clock tower and the ruins of Ephesus nearby", "boyoz pastries and kumru sandwiches",
     ("smyrna",)),
  _C("Cirebon", "Indonesia", "Asia", 0.33, COASTAL, ("Indonesian", "Javanese"), TROP, "S",
     False, "the Kasepuhan and Kanoman royal palaces and Trusmi batik",
     "empal gentong (beef curry soup) and nasi jamblang"),
  _C("Taiyuan", "China", "Asia", 4.0, INLAND, ("Mandarin",), CONT, "N", False,
     "the Jinci Temple and the Twin Pagoda Temple", "knife-cut noodles and mature vinegar"),
  _C("Brasília", "Brazil", "South America", 4.6, INLAND, ("Portuguese",), TROP, "S", True,
     "its airplane-shaped plan and the modernist cathedral and National Congress",
     "arroz com pequi (rice with pequi fruit)"),
  _C("Bucharest", "Romania", "Europe", 1.8, INLAND, ("Romanian",), CONT, "N", True,
     "the huge Palace of the Parliament and the Arcul de Triumf",
     "sarmale (cabbage rolls) and mici (grilled sausages)", ("bucuresti",)),
  _C("Faisalabad", "Pakistan", "Asia", 3.4, INLAND, ("Punjabi", "Urdu"), DESERT, "N", False,
     "its clock tower surrounded by eight bazaars, and its textile mills",
     "sweet lassi and chana (chickpea curry)", ("lyallpur",)),
  _C("Quezon City", "Philippines", "Asia", 3.0, NEAR, ("Filipino", "English"), TROP, "N", False,
     "a large memorial circle park and the main University of the Philippines campus",
     "lechon (roast pig) and adobo", ("quezon",)),
  _C("Medan", "Indonesia", "Asia", 2.4, NEAR, ("Indonesian", "Batak", "Malay"), TROP, "N",
     False, "the Maimun Palace and the Great Mosque, with Lake Toba a few hours away",
     "durian pancakes and bika ambon cake"),
  _C("Houston", "United States", "North America", 6.4, NEAR, ("English", "Spanish"), SUB, "N",
     False, "NASA's Johnson Space Center (Mission Control)", "Tex-Mex food and barbecue"),
  _C("Abidjan", "Côte d'Ivoire", "Africa", 5.2, COASTAL, ("French",), TROP, "N", False,
     "the Plateau business district on the Ébrié Lagoon and St. Paul's Cathedral",
     "attiéké (cassava couscous) with grilled fish"),
  _C("Mashhad", "Iran", "Asia", 3.3, INLAND, ("Persian",), SEMI, "N", False,
     "the vast Imam Reza shrine", "saffron and shishlik (grilled lamb chops)"),
  _C("Medellín", "Colombia", "South America", 4.0, INLAND, ("Spanish",), TROP, "N", False,
     "its Metrocable cable cars, the Comuna 13 street art and Botero sculptures",
     "bandeja paisa"),
  _C("Kanpur", "India", "Asia", 3.1, INLAND, ("Hindi",), SUB, "N", False,
     "the JK Temple on the Ganges plain and its leather industry", "thaggu ke laddu (sweets)",
     ("cawnpore",)),
  _C("Budapest", "Hungary", "Europe", 1.8, INLAND, ("Hungarian",), CONT, "N", True,
     "the Parliament Building on the Danube, the Chain Bridge and thermal baths",
     "goulash and langos"),
  _C("Caracas", "Venezuela", "South America", 2.9, NEAR, ("Spanish",), TROP, "N", True,
     "El Ávila mountain and the Plaza Bolívar", "arepas"),
)

#: Istanbul spans two continents; the oracle says so.
SECOND_CONTINENT = {"Istanbul": "Asia"}

#: Country names as the answers write them (default: the name itself).
COUNTRY_DISPLAY = {"United States": "the United States", "United Kingdom": "the United Kingdom",
                   "Philippines": "the Philippines",
                   "DR Congo": "the Democratic Republic of the Congo"}

#: All countries, `;`-separated, each optionally followed by ` = alias, alias` (other names
#: and adjectives that point to it).
_COUNTRIES = """
Afghanistan = afghan; Albania = albanian; Algeria = algerian; Andorra; Angola = angolan;
Antigua and Barbuda; Argentina = argentine, argentinian, argentinean; Armenia = armenian;
Australia = australian; Austria = austrian; Azerbaijan; Bahamas; Bahrain; Bangladesh =
bangladeshi; Barbados; Belarus; Belgium = belgian; Belize; Benin; Bhutan; Bolivia = bolivian;
Bosnia and Herzegovina = bosnia; Botswana; Brazil = brazilian, brasil; Brunei; Bulgaria =
bulgarian; Burkina Faso; Burundi; Cambodia = cambodian; Cameroon; Canada = canadian; Cape Verde;
Central African Republic; Chad; Chile = chilean; China = chinese, prc; Colombia = colombian;
Comoros; Republic of the Congo = congo brazzaville, republic of congo; Costa Rica; Côte d'Ivoire
= ivory coast, ivorian, cote divoire; Croatia = croatian; Cuba = cuban; Cyprus; Czech Republic =
czechia, czech; Denmark = danish; Djibouti; Dominica; Dominican Republic; DR Congo = democratic
republic of the congo, democratic republic of congo, drc, dr congo, zaire;
Ecuador = ecuadorian; Egypt = egyptian; El Salvador; Equatorial Guinea; Eritrea; Estonia;
Eswatini = swaziland; Ethiopia = ethiopian, ethopia; Fiji; Finland = finnish; France = french;
Gabon; Gambia; Georgia; Germany = german; Ghana = ghanaian; Greece = greek; Grenada; Guatemala;
Guinea; Guinea-Bissau; Guyana; Haiti; Honduras; Hungary = hungarian; Iceland; India = indian;
Indonesia = indonesian; Iran = iranian, persia; Iraq = iraqi; Ireland = irish; Israel =
israeli; Italy = italian; Jamaica; Japan = japanese; Jordan; Kazakhstan; Kenya = kenyan;
Kiribati; Kosovo; Kuwait; Kyrgyzstan; Laos; Latvia; Lebanon; Lesotho; Liberia; Libya;
Liechtenstein; Lithuania; Luxembourg; Madagascar; Malawi; Malaysia = malaysian; Maldives; Mali;
Malta; Marshall Islands; Mauritania; Mauritius; Mexico = mexican; Micronesia; Moldova; Monaco;
Mongolia = mongolian; Montenegro; Morocco = moroccan; Mozambique; Myanmar = burma, burmese;
Namibia; Nauru; Nepal = nepalese; Netherlands = holland, dutch; New Zealand; Nicaragua; Niger;
Nigeria = nigerian; North Korea = dprk, north korean; North Macedonia = macedonia; Norway =
norwegian; Oman; Pakistan = pakistani; Palau; Palestine; Panama; Papua New Guinea; Paraguay;
Peru = peruvian; Philippines = philippine, filipino; Poland = polish; Portugal = portuguese;
Qatar; Romania = romanian; Russia = russian, russian federation; Rwanda; Saint Lucia; Samoa;
San Marino; Saudi Arabia = saudi; Senegal; Serbia; Seychelles; Sierra Leone; Singapore;
Slovakia; Slovenia; Solomon Islands; Somalia; South Africa = south african; South Korea =
south korean, republic of korea; South Sudan; Spain = spanish; Sri Lanka; Sudan;
Suriname; Sweden = swedish; Switzerland = swiss; Syria = syrian; Taiwan = taiwanese; Tajikistan;
Tanzania; Thailand = thai; Timor-Leste = east timor; Togo; Tonga; Trinidad and Tobago; Tunisia;
Turkey = turkish, turkiye; Turkmenistan; Tuvalu; Uganda; Ukraine = ukrainian; United Arab
Emirates = uae, emirates; United Kingdom = uk, u k, britain, great britain, british, england,
english; United States = usa, u s a, u s, the us, united states of america, america, american;
Uruguay; Uzbekistan = uzbek; Vanuatu; Vatican City; Venezuela = venezuelan; Vietnam = vietnamese,
viet nam; Yemen; Zambia; Zimbabwe
"""

#: Names that point to several countries at once (the answer says which one, if any).
COUNTRY_GROUPS = {"korea": ("South Korea", "North Korea"),
                  "korean": ("South Korea", "North Korea"),
                  "congo": ("DR Congo", "Republic of the Congo"),
                  "congolese": ("DR Congo", "Republic of the Congo")}

#: Regions: name -> member countries (only the list's countries matter for yes/no answers).
REGIONS = {
  "East Asia": ("China", "Japan", "South Korea", "North Korea", "Taiwan", "Mongolia"),
  "Southeast Asia": ("Indonesia", "Thailand", "Vietnam", "Myanmar", "Philippines", "Singapore",
                     "Malaysia", "Cambodia", "Laos", "Brunei", "Timor-Leste"),
  "South Asia": ("India", "Pakistan", "Bangladesh", "Sri Lanka", "Nepal", "Bhutan",
                 "Maldives"),
  "Central Asia": ("Uzbekistan", "Kazakhstan", "Kyrgyzstan", "Tajikistan", "Turkmenistan"),
  "the Middle East": ("Iran", "Iraq", "Turkey", "Egypt", "Saudi Arabia", "Syria", "Jordan",
                      "Israel", "Lebanon", "Kuwait", "Qatar", "Bahrain", "United Arab Emirates",
                      "Oman", "Yemen", "Palestine"),
  "North Africa": ("Egypt", "Morocco", "Algeria", "Tunisia", "Libya", "Sudan"),
  "West Africa": ("Côte d'Ivoire", "Nigeria", "Ghana", "Senegal", "Mali", "Guinea", "Benin",
                  "Togo", "Burkina Faso", "Niger", "Liberia", "Sierra Leone"),
  "Latin America": ("Mexico", "Cuba", "Colombia", "Peru", "Chile", "Brazil", "Argentina",
                    "Ecuador", "Venezuela", "Bolivia", "Paraguay", "Uruguay", "Guatemala",
                    "Honduras", "El Salvador", "Nicaragua", "Costa Rica", "Panama",
                    "Dominican Republic"),
  "the Caribbean": ("Cuba", "Jamaica", "Haiti", "Dominican Republic", "Bahamas", "Barbados",
                    "Trinidad and Tobago"),
  "Central America": ("Guatemala", "Belize", "Honduras", "El Salvador", "Nicaragua",
                      "Costa Rica", "Panama"),
}
REGION_ALIASES = {"middle east": "the Middle East", "mideast": "the Middle East",
                  "caribbean": "the Caribbean", "latin american": "Latin America",
                  "east asian": "East Asia", "southeast asian": "Southeast Asia",
                  "south east asia": "Southeast Asia", "south asian": "South Asia",
                  "far east": "East Asia"}

#: Continent names and adjectives -> continents (the Americas name two).
CONTINENT_ALIASES = {
  "asia": ("Asia",), "asian": ("Asia",), "europe": ("Europe",), "european": ("Europe",),
  "africa": ("Africa",), "african": ("Africa",), "north america": ("North America",),
  "north american": ("North America",), "south america": ("South America",),
  "south american": ("South America",), "oceania": ("Oceania",), "australasia": ("Oceania",),
  "americas": ("North America", "South America"), "eurasia": ("Europe", "Asia"),
}

#: Language names and their aliases -> the languages in the city table they match.
LANGUAGE_ALIASES = {
  "chinese": ("Mandarin", "Cantonese", "Wu Chinese", "Taiwanese Hokkien"),
  "mandarin": ("Mandarin",), "cantonese": ("Cantonese",), "shanghainese": ("Wu Chinese",),
  "wu": ("Wu Chinese",),
  "hokkien": ("Taiwanese Hokkien",), "taiwanese": ("Taiwanese Hokkien",),
  "farsi": ("Persian",), "bangla": ("Bengali",), "tagalog": ("Filipino",),
  "bahasa": ("Indonesian", "Malay"),
}
#: Languages nobody speaks in the list's cities but a question may name.
OTHER_LANGUAGES = ("Dutch", "Greek", "Polish", "Swahili", "Hebrew", "Yoruba", "Hausa", "Zulu",
                   "Swedish", "Czech", "Khmer", "Lao", "Nepali", "Sinhala", "Pashto",
                   "Kurdish", "Quechua", "Catalan", "Basque", "Norwegian", "Danish",
                   "Finnish", "Somali", "Berber", "Kazakh", "Tibetan", "Mongolian", "Serbian",
                   "Croatian", "Bulgarian", "Malayalam", "Sindhi")


def countries() -> dict[str, str]:
  """Every country name and alias (lowercase, unaccented) -> the canonical country name."""
  table: dict[str, str] = {}
  for entry in " ".join(_COUNTRIES.split()).split(";"):
    if not entry.strip():
      continue
    name, _, aliases = entry.partition("=")
    name = name.strip()
    table[name.lower()] = name
    for alias in aliases.split(","):
      if alias.strip():
        table[alias.strip()] = name
  return table
