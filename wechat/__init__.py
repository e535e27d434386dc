"""The WeChat Official Account (微信公众号): drafts and publishing, not chat.

Registered under the ``dalaba.publishers`` entry point group (see :mod:`cms.publishers`);
imports the cms data layer, never Flask. cms never imports this package.
"""

from wechat.publisher import WechatPublisher, from_settings, plugin

__all__ = ["WechatPublisher", "from_settings", "plugin"]
