from tokentail.shared.store.keys import Keys


def test_session_keys_share_one_hash_tag() -> None:
    keys = Keys("tt").session("s_abc")
    all_keys = [keys.events, keys.meta, keys.runs, keys.lease, keys.gone]
    assert all(key.startswith("tt:{s_abc}:") for key in all_keys)
    assert len(set(all_keys)) == len(all_keys)


def test_queue_and_wake_channel_are_namespaced_by_prefix() -> None:
    assert Keys("a").queue != Keys("b").queue
    assert Keys("a").wake_channel == "a:wake"
