"""Group-robot chat channels: WeCom (企业微信), DingTalk (钉钉) and Feishu/Lark (飞书).

Each platform is one module (:mod:`robots.wecom`, :mod:`robots.dingtalk`,
:mod:`robots.feishu`) registered under the ``dalaba.channels`` entry point group; they share
one HTTP client with per-robot rate limits (:mod:`robots.base`). A robot is a
:class:`cms.models.ChatGroup` whose credentials, the ``webhook`` address and optional
signing ``secret`` (:mod:`robots.address` checks them when the robot is bound), reach the
channel in :class:`cms.channels.Notice`; cms stores them without reading them. This
package imports the cms data layer's interface, never Flask; cms never imports it.
"""

__all__ = ["base", "dingtalk", "feishu", "keys", "wecom"]
