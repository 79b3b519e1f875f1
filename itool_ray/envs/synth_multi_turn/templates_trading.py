"""Templates of ``TradingBot``, and those joining it to ``MathAPI`` and ``MessageAPI`` (registered at
import, in this order)."""

from __future__ import annotations

from itool_ray.envs.synth_multi_turn.templating import (
    _Ctx,
    _Draft,
    _join,
    _login,
    _msg_people,
    _template,
)
from itool_ray.envs.synth_multi_turn.vocabulary import _COMPANIES, _MATH, _MSG, _TR, _c, _one


def _company(ctx: _Ctx) -> tuple[str, str]:
    stocks = ctx.inst(_TR).stocks
    return ctx.rng.choice([(n, s) for n, s in _COMPANIES.items() if s in stocks])


@_template("tr.price_by_name", _TR)
def _tr_price_by_name(ctx: _Ctx) -> _Draft | None:
    name, symbol = _company(ctx)
    text = _one(
        ctx.rng,
        f"What's {name} trading at right now?",
        f"Look up the current stock price of {name}.",
    )
    calls = [_c("get_symbol_by_name", name=name), _c("get_stock_info", symbol=symbol)]
    return _Draft(text, calls)


@_template("tr.stock_info", _TR)
def _tr_stock_info(ctx: _Ctx) -> _Draft | None:
    symbol = ctx.rng.choice(sorted(ctx.inst(_TR).stocks))
    text = _one(
        ctx.rng,
        f"Give me the details for {symbol}: price, volume and moving averages.",
        f"How is {symbol} doing today?",
    )
    return _Draft(text, [_c("get_stock_info", symbol=symbol)])


@_template("tr.limit_order", _TR)
def _tr_limit_order(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TR)
    inst = ctx.inst(_TR)
    symbol = ctx.rng.choice(sorted(inst.stocks))
    side = ctx.rng.choice(("Buy", "Sell"))
    n = ctx.rng.randint(1, 40)
    price = round(inst.stocks[symbol]["price"] * ctx.rng.uniform(0.95, 1.05), 2)
    text = _one(
        ctx.rng,
        f"Place an order to {side.lower()} {n} shares of {symbol} at ${price} each.",
        f"{side} {n} {symbol} shares with a limit price of ${price}.",
    )
    calls = [*login, _c("place_order", order_type=side, symbol=symbol, price=price, amount=n)]
    oid = inst.order_counter
    return _Draft(_join(pre, text), calls, lambda w: oid in w.instances[_TR].orders, True)


@_template("tr.market_buy", _TR)
def _tr_market_buy(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TR)
    name, symbol = _company(ctx)
    n = ctx.rng.randint(1, 25)
    price = ctx.inst(_TR).stocks[symbol]["price"]
    text = _one(
        ctx.rng,
        f"Buy {n} shares of {name} at the current market price.",
        f"I want {n} {name} shares at whatever they cost right now.",
    )
    calls = [
        *login,
        _c("get_symbol_by_name", name=name),
        _c("get_stock_info", symbol=symbol),
        _c("place_order", order_type="Buy", symbol=symbol, price=price, amount=n),
    ]
    return _Draft(_join(pre, text), calls, changes=True)


def _open_orders(ctx: _Ctx) -> list[int]:
    orders = ctx.inst(_TR).orders
    return sorted(i for i, o in orders.items() if o["status"] not in ("Completed", "Cancelled"))


@_template("tr.cancel", _TR)
def _tr_cancel(ctx: _Ctx) -> _Draft | None:
    if not (ids := _open_orders(ctx)):
        return None
    i = ctx.rng.choice(ids)
    text = _one(ctx.rng, f"Cancel my order {i}.", f"Please call off order {i}.")
    return _Draft(text, [_c("cancel_order", order_id=i)], changes=True)


@_template("tr.order_status", _TR)
def _tr_order_status(ctx: _Ctx) -> _Draft | None:
    i = ctx.rng.choice(sorted(ctx.inst(_TR).orders))
    text = _one(ctx.rng, f"What's the status of order {i}?", f"Show me the details of order {i}.")
    return _Draft(text, [_c("get_order_details", order_id=i)])


@_template("tr.watch_add", _TR)
def _tr_watch_add(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TR)
    options = sorted(s for s in inst.stocks if s not in inst.watch_list)
    if not options:
        return None
    s = ctx.rng.choice(options)
    text = _one(ctx.rng, f"Add {s} to my watchlist.", f"Put {s} on my watch list.")
    return _Draft(text, [_c("add_to_watchlist", stock=s)], changes=True)


@_template("tr.watch_remove", _TR)
def _tr_watch_remove(ctx: _Ctx) -> _Draft | None:
    if not (watched := ctx.inst(_TR).watch_list):
        return None
    pre, login = _login(ctx, _TR)
    s = ctx.rng.choice(watched)
    text = _one(ctx.rng, f"Take {s} off my watchlist.", f"Remove {s} from the stocks I watch.")
    calls = [*login, _c("remove_stock_from_watchlist", symbol=s)]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("tr.watchlist", _TR)
def _tr_watchlist(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TR)
    text = _one(ctx.rng, "Which stocks are on my watchlist?", "Show me my watchlist.")
    return _Draft(_join(pre, text), [*login, _c("get_watchlist")])


@_template("tr.fund", _TR)
def _tr_fund(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TR)
    amount = float(ctx.rng.randrange(100, 10_000, 50))
    text = _one(
        ctx.rng,
        f"Deposit ${amount:.2f} into my trading account.",
        f"Fund my account with ${amount:.2f}.",
    )
    return _Draft(_join(pre, text), [*login, _c("fund_account", amount=amount)], changes=True)


@_template("tr.account", _TR)
def _tr_account(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TR)
    text = _one(ctx.rng, "What's my trading account balance?", "Show me my account details.")
    return _Draft(_join(pre, text), [*login, _c("get_account_info")])


@_template("tr.tech_filter", _TR)
def _tr_tech_filter(ctx: _Ctx) -> _Draft | None:
    tech = ctx.peek([_c("get_available_stocks", sector="Technology")])[1][0]["stock_list"]
    low = float(ctx.rng.randrange(0, 400, 25))
    high = low + float(ctx.rng.randrange(100, 800, 50))
    text = _one(
        ctx.rng,
        f"Which technology stocks cost between ${low:.0f} and ${high:.0f}?",
        f"List the tech sector stocks priced from ${low:.0f} to ${high:.0f}.",
    )
    calls = [
        _c("get_available_stocks", sector="Technology"),
        _c("filter_stocks_by_price", stocks=tech, min_price=low, max_price=high),
    ]
    return _Draft(text, calls)


@_template("tr.market_status", _TR)
def _tr_market_status(ctx: _Ctx) -> _Draft | None:
    now = ctx.peek([_c("get_current_time")])[1][0]["current_time"]
    text = _one(
        ctx.rng,
        "Check the current time and update the market status to match.",
        "Is the market open? Get the time and refresh the market status.",
    )
    calls = [_c("get_current_time"), _c("update_market_status", current_time_str=now)]
    return _Draft(text, calls)


@_template("tr.withdraw", _TR)
def _tr_withdraw(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TR)
    if inst.market_status != "Open":
        return None
    pre, login = _login(ctx, _TR)
    account, balance = inst.account_info["account_id"], inst.account_info["balance"]
    amount = float(ctx.rng.randrange(50, max(100, int(balance // 2)), 50))
    text = _one(
        ctx.rng,
        f"Withdraw ${amount:.2f} from account {account}.",
        f"Take ${amount:.2f} out of my trading account {account}.",
    )
    call = _c("make_transaction", account_id=account, xact_type="withdrawal", amount=amount)
    return _Draft(_join(pre, text), [*login, call], changes=True)


@_template("tr.history", _TR)
def _tr_history(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TR)
    text = _one(ctx.rng, "List all my order IDs.", "What orders have I placed so far?")
    return _Draft(_join(pre, text), [*login, _c("get_order_history")])


@_template("tr_math.holding_value", _TR, _MATH)
def _tr_math_holding_value(ctx: _Ctx) -> _Draft | None:
    stocks = ctx.inst(_TR).stocks
    (s1, s2), (n1, n2) = (
        ctx.rng.sample(sorted(stocks), 2),
        (ctx.rng.randint(1, 60), ctx.rng.randint(1, 60)),
    )
    v1, v2 = (
        ctx.peek([_c("multiply", a=stocks[s]["price"], b=n)])[1][0]["result"]
        for s, n in ((s1, n1), (s2, n2))
    )
    text = _one(
        ctx.rng,
        f"I hold {n1} shares of {s1} and {n2} shares of {s2}. What are they worth together "
        "at current prices?",
        f"What's the total value of my holdings: {n1} {s1} shares plus {n2} {s2} shares?",
    )
    calls = [
        _c("get_stock_info", symbol=s1),
        _c("get_stock_info", symbol=s2),
        _c("multiply", a=stocks[s1]["price"], b=n1),
        _c("multiply", a=stocks[s2]["price"], b=n2),
        _c("add", a=v1, b=v2),
    ]
    return _Draft(text, calls)


@_template("tr_math.watch_average", _TR, _MATH)
def _tr_math_watch_average(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TR)
    watched = [s for s in inst.watch_list if s in inst.stocks]
    if len(watched) < 2 or len(watched) != len(inst.watch_list):
        return None
    pre, login = _login(ctx, _TR)
    text = _one(
        ctx.rng,
        "What's the average current price of the stocks on my watchlist?",
        "Average the prices of everything I'm watching.",
    )
    calls = [
        *login,
        _c("get_watchlist"),
        *(_c("get_stock_info", symbol=s) for s in watched),
        _c("mean", numbers=[inst.stocks[s]["price"] for s in watched]),
    ]
    return _Draft(_join(pre, text), calls)


@_template("tr_msg.cancel_notify", _TR, _MSG)
def _tr_msg_cancel_notify(ctx: _Ctx) -> _Draft | None:
    if not (ids := _open_orders(ctx)):
        return None
    pre, login = _login(ctx, _MSG)
    i, person = ctx.rng.choice(ids), ctx.rng.choice(_msg_people(ctx))
    uid, note = ctx.inst(_MSG).user_map[person], f"Order {i} has been cancelled."
    text = _one(
        ctx.rng,
        f"Cancel order {i} and message {person} '{note}'",
        f"Call off order {i}, then tell {person} by message: '{note}'",
    )
    calls = [
        *login,
        _c("cancel_order", order_id=i),
        _c("get_user_id", user=person),
        _c("send_message", receiver_id=uid, message=note),
    ]
    return _Draft(_join(pre, text), calls, changes=True)
