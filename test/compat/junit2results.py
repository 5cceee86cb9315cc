"""Reads JUnit XML reports (Maven Surefire) named on the command line;
writes PASS|FAIL|SKIP <class.test> lines."""
import sys
import xml.etree.ElementTree as ET

for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        continue
    for tc in root.iter("testcase"):
        name = "%s.%s" % (tc.get("classname", "").rsplit(".", 1)[-1], tc.get("name"))
        if tc.find("failure") is not None or tc.find("error") is not None:
            print("FAIL", name)
        elif tc.find("skipped") is not None:
            print("SKIP", name)
        else:
            print("PASS", name)
