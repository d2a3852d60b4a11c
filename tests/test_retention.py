"""The holder search (retention.find_holders) on its own: what keeps new objects alive, named."""

from __future__ import annotations

import pytest

from pytest_memtrack.hunt.retention import find_holders


class Leaked:
    pass


class Keeper:
    def __init__(self) -> None:
        self.kept: list[Leaked] = []


@pytest.mark.parametrize("dict_read", [False, True], ids=["attributes-untouched", "__dict__-read"])
def test_an_instance_attribute_is_named_wherever_the_instance_keeps_its_attributes(dict_read: bool) -> None:
    # The list's referrer is the instance itself while CPython keeps its attributes inline (3.11+), or the
    # instance's own __dict__ (always on 3.10; on 3.11 and 3.12 once anything read __dict__): named either way.
    keepers = [Keeper()]  # reachable by no module-level name: only "<type>.attribute" can name it
    if dict_read:
        vars(keepers[0])
    new = [Leaked() for _ in range(3)]
    keepers[0].kept.extend(new)
    holders = find_holders(new, excluded=(new,))
    assert [(h.name, h.kind, h.objects) for h in holders] == [(f"<{__name__}.Keeper>.kept", "list", 3)]


def test_a_dict_that_is_no_instances_attributes_names_no_instance() -> None:
    # A plain dict holding the list is not an instance's __dict__: nothing to name it by, so no holder.
    unnamed = [{"kept": []}]
    new = [Leaked() for _ in range(3)]
    unnamed[0]["kept"].extend(new)
    assert find_holders(new, excluded=(new,)) == []
