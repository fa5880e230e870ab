"""Where a job's stream goes: TRTC's RTMP ingest URL shape (../shared/TRTC.md)."""

from __future__ import annotations

from urllib.parse import quote, urlencode


def rtmp_room(room_id: int | None, str_room_id: str | None) -> str:
    """The RTMP room name for a job: TRTC's RTMP ingest knows only string rooms.

    A numeric ``RoomId`` (which wins when both are given) is pushed as the string room
    named by its decimal digits: TRTC clients must enter string room "123" to see it.
    """
    if room_id is not None:
        return str(room_id)
    if str_room_id is None:
        raise ValueError("a job needs RoomId or StrRoomId")
    return str_room_id


def push_url(base: str, room: str, sdk_app_id: int, user_id: str, user_sig: str) -> str:
    """``<base>/<room>?sdkappid=…&userid=…&usersig=…`` (the UserSig is a secret)."""
    query = urlencode({"sdkappid": sdk_app_id, "userid": user_id, "usersig": user_sig})
    return f"{base.rstrip('/')}/{quote(room, safe='')}?{query}"
