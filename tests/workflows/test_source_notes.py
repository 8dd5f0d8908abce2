"""The lines a run prints about its source before it starts (workflows/run/pipeline.source_notes):
which source a run without one screens, and which Materials Project entries it includes. They name
the command line's options, as the run's other notes do; the source only says what it chose."""
from workflows.api import RUN
from workflows.run.options import RunSettings, checked
from workflows.run.pipeline import source_notes
from tests.helpers import DATA


def notes(tmp_path, **settings):
    opts, _ = checked(RunSettings(**dict(RUN, query="Li-*-O", cache=tmp_path / "cache", out=tmp_path / "out",
                                         **settings)))
    return source_notes(opts)


def test_a_run_without_a_source_says_which_it_screens(tmp_path, monkeypatch, mp_api_env):
    monkeypatch.delenv("MP_API_KEY")
    assert notes(tmp_path) == ["no --source given and MP_API_KEY not set: using hypothetical substitution "
                               "candidates (element substitution into pymatgen's structure prototypes)"]
    monkeypatch.setenv("MP_API_KEY", "a-key")
    assert notes(tmp_path) == ["no --source given: using the Materials Project API (MP_API_KEY is set)",
                               "Materials Project entries: deprecated ones left out; GNoME r2SCAN entries "
                               "left out (--gnome includes them)"]


def test_the_mp_entries_note_follows_gnome_into_substitution_templates(tmp_path, mp_api_env):
    assert notes(tmp_path, source="mp", gnome=True) == [
        "Materials Project entries: deprecated ones left out; GNoME r2SCAN entries included (--gnome; "
        "hypothetical, another functional; see the gnome column)"]
    assert notes(tmp_path, source="substitution:mp") == [
        "Materials Project entries: deprecated ones left out; GNoME r2SCAN entries left out (--gnome includes them)"]
    assert notes(tmp_path, source=f"local:{DATA}") == notes(tmp_path, source=f"substitution:local:{DATA}") == []
