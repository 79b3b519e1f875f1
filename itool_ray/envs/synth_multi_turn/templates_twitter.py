"""Templates of ``TwitterAPI``, and the one tweeting a file's line (registered at import, in this
order)."""

from __future__ import annotations

import re

from itool_ray.envs.synth_multi_turn.templating import (
    _Ctx,
    _Draft,
    _join,
    _login,
    _pick_file,
    _template,
)
from itool_ray.envs.synth_multi_turn.vocabulary import _FS, _TAGS, _TW, _TWEETS, _c, _listing, _one


def _tweet_text(ctx: _Ctx) -> str:
    return ctx.rng.choice(_TWEETS) + ctx.rng.choice(("!", ".", " today!", " :)"))


@_template("tw.post", _TW)
def _tw_post(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TW)
    content, tags = _tweet_text(ctx), ctx.rng.sample(_TAGS, ctx.rng.randint(1, 3))
    text = _one(
        ctx.rng,
        f"Post a tweet saying '{content}' with the tags {_listing(tags)}.",
        f"Tweet '{content}' and tag it {_listing(tags)}.",
    )
    calls = [*login, _c("post_tweet", content=content, tags=tags, mentions=[])]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("tw.post_mention", _TW)
def _tw_post_mention(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TW)
    content = _tweet_text(ctx)
    people = ["@" + h for h in ctx.rng.sample(ctx.facts[_TW]["others"], ctx.rng.randint(1, 2))]
    text = _one(
        ctx.rng,
        f"Tweet '{content}' and mention {_listing(people)}.",
        f"Share '{content}' on Twitter, mentioning {_listing(people)}.",
    )
    calls = [*login, _c("post_tweet", content=content, tags=[], mentions=people)]
    return _Draft(_join(pre, text), calls, changes=True)


def _tweets_not_retweeted(ctx: _Ctx) -> list[int]:
    inst = ctx.inst(_TW)
    done = inst.retweets.get(inst.username, [])
    return [i for i, t in inst.tweets.items() if t["username"] != inst.username and i not in done]


@_template("tw.retweet_id", _TW)
def _tw_retweet_id(ctx: _Ctx) -> _Draft | None:
    if not (ids := _tweets_not_retweeted(ctx)):
        return None
    pre, login = _login(ctx, _TW)
    i = ctx.rng.choice(ids)
    text = _one(ctx.rng, f"Retweet the tweet with ID {i}.", f"Please retweet tweet number {i}.")
    return _Draft(_join(pre, text), [*login, _c("retweet", tweet_id=i)], changes=True)


@_template("tw.retweet_search", _TW)
def _tw_retweet_search(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TW)
    options = []
    for i in _tweets_not_retweeted(ctx):
        for word in re.findall(r"[A-Za-z]{5,}", inst.tweets[i]["content"]):
            hits = inst.search_tweets(word)  # a read-only method, on the live instance
            if [t["id"] for t in hits] == [i]:
                options.append((i, word))
    if not options:
        return None
    pre, login = _login(ctx, _TW)
    i, word = ctx.rng.choice(options)
    text = _one(
        ctx.rng,
        f"Find the tweet that mentions '{word}' and retweet it.",
        f"Search Twitter for '{word}' and retweet the post you find.",
    )
    calls = [*login, _c("search_tweets", keyword=word), _c("retweet", tweet_id=i)]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("tw.comment", _TW)
def _tw_comment(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TW)
    if not inst.tweets:
        return None
    pre, login = _login(ctx, _TW)
    i = ctx.rng.choice(sorted(inst.tweets))
    note = ctx.rng.choice(("Great point!", "Love this.", "Congrats to the team!", "So true."))
    text = _one(
        ctx.rng, f"Comment '{note}' on tweet {i}.", f"Reply to tweet {i} with the comment '{note}'."
    )
    calls = [*login, _c("comment", tweet_id=i, comment_content=note)]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("tw.follow", _TW)
def _tw_follow(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TW)
    options = [h for h in ctx.facts[_TW]["others"] if h not in inst.following_list]
    if not options:
        return None
    pre, login = _login(ctx, _TW)
    h = ctx.rng.choice(options)
    text = _one(ctx.rng, f"Follow {h} on Twitter.", f"Start following the user {h}.")
    return _Draft(_join(pre, text), [*login, _c("follow_user", username_to_follow=h)], changes=True)


@_template("tw.unfollow", _TW)
def _tw_unfollow(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TW)
    if not inst.following_list:
        return None
    pre, login = _login(ctx, _TW)
    h = ctx.rng.choice(inst.following_list)
    text = _one(ctx.rng, f"Unfollow {h}.", f"Stop following {h} on Twitter.")
    calls = [*login, _c("unfollow_user", username_to_unfollow=h)]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("tw.following", _TW)
def _tw_following(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TW)
    text = _one(ctx.rng, "Who am I following on Twitter?", "List the accounts I follow.")
    return _Draft(_join(pre, text), [*login, _c("list_all_following")])


@_template("tw.stats", _TW)
def _tw_stats(ctx: _Ctx) -> _Draft | None:
    me = ctx.inst(_TW).username
    text = _one(
        ctx.rng,
        f"How many tweets, follows and retweets does my account {me} have?",
        f"Pull the Twitter stats for {me}.",
    )
    return _Draft(text, [_c("get_user_stats", username=me)])


@_template("tw.user_tweets", _TW)
def _tw_user_tweets(ctx: _Ctx) -> _Draft | None:
    authors = sorted({t["username"] for t in ctx.inst(_TW).tweets.values()})
    if not authors:
        return None
    h = ctx.rng.choice(authors)
    text = _one(ctx.rng, f"Show me everything {h} has tweeted.", f"List the tweets posted by {h}.")
    return _Draft(text, [_c("get_user_tweets", username=h)])


@_template("tw.comments", _TW)
def _tw_comments(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TW)
    ids = sorted(i for i in inst.comments if i in inst.tweets)
    if not ids:
        return None
    i = ctx.rng.choice(ids)
    text = _one(ctx.rng, f"Show me the comments on tweet {i}.", f"What replies has tweet {i} got?")
    return _Draft(text, [_c("get_tweet_comments", tweet_id=i)])


@_template("fs_tw.tweet_line", _FS, _TW)
def _fs_tw_tweet_line(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx, lambda f: bool(f.content.strip()))):
        return None
    place, name, file = pick
    first = file.content.splitlines()[0]
    if not first.strip():
        return None
    pre, login = _login(ctx, _TW)
    text = _one(
        ctx.rng,
        f"Post the first line of '{name}' {place.where} as a tweet.",
        f"Read '{name}' {place.where} and tweet its opening line.",
    )
    calls = [
        *login,
        *place.nav,
        _c("cat", file_name=name),
        _c("post_tweet", content=first, tags=[], mentions=[]),
    ]
    return _Draft(_join(pre, text), calls, changes=True)
