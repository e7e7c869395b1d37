"""The preset deflate dictionary of CL1 presentations: common licence terms.

Deflate can refer back into a *preset dictionary* as if it were text already seen, so
a claim such as ``有限责任公司(自然人投资或控股)`` costs a few bits instead of 45 bytes
when the dictionary holds it. The terms below are the ones most Chinese e-licences
repeat: administrative divisions, address words, the market-entity types, standard
business-scope wording (经营范围规范表述), registered-capital amounts, issuing
authorities, common company-name endings and food and health permit terms.

The dictionary is part of the CL1 format: every reader must use exactly these bytes
(:data:`PRESET_DICTIONARY`, whose SHA-256 is :data:`PRESET_DICTIONARY_SHA256`).
Changing one byte makes every existing CL1 code unreadable, so a new dictionary
needs a new format version (``CL2:``). Terms used by more licences come later,
because deflate codes nearer matches in fewer bits.
"""

from __future__ import annotations

__all__ = ["PRESET_DICTIONARY", "PRESET_DICTIONARY_SHA256"]

_GROUPS = (
    # English words of certificate-type codes
    "certificate licence license permit registration business food health",
    # provincial-level divisions
    "北京市天津市河北省山西省内蒙古自治区辽宁省吉林省黑龙江省上海市江苏省浙江省安徽省福建省江西省"
    "山东省河南省湖北省湖南省广东省广西壮族自治区海南省重庆市四川省贵州省云南省西藏自治区陕西省"
    "甘肃省青海省宁夏回族自治区新疆维吾尔自治区香港特别行政区澳门特别行政区",
    # provincial capitals and sub-provincial cities
    "石家庄市太原市呼和浩特市沈阳市大连市长春市哈尔滨市南京市苏州市杭州市宁波市温州市合肥市福州市"
    "厦门市南昌市济南市青岛市郑州市武汉市长沙市广州市深圳市南宁市海口市成都市贵阳市昆明市拉萨市"
    "西安市兰州市西宁市银川市乌鲁木齐市",
    # address words
    "街道社区村镇乡县区市省路大道街巷弄号号楼栋幢单元层楼室号院大厦广场中心园区产业园科技园软件园"
    "创业园孵化器工业园区经济开发区经济技术开发区高新技术产业开发区自由贸易试验区",
    # food and health permits
    "食品经营许可证食品生产许可证健康证明公共场所从业人员食品从业人员体检合格主体业态食品销售经营者"
    "餐饮服务经营者单位食堂经营项目预包装食品（含冷藏冷冻食品）销售散装食品（含冷藏冷冻食品）销售"
    "热食类食品制售冷食类食品制售自制饮品制售男女",
    # business-scope catalogue: licensed items
    "许可项目：食品经营；食品销售；餐饮服务；药品零售；医疗器械经营；第二类增值电信业务；建设工程施工；"
    "道路货物运输（不含危险货物）；出版物零售；烟草制品零售；酒类经营；",
    # business-scope catalogue: general items
    "一般项目：技术服务、技术开发、技术咨询、技术交流、技术转让、技术推广；软件开发；信息系统集成服务；"
    "信息技术咨询服务；数据处理和存储支持服务；网络技术服务；人工智能应用软件开发；计算机系统服务；"
    "日用百货销售；五金产品零售；电子产品销售；服装服饰零售；化妆品零售；办公用品销售；家用电器销售；"
    "食用农产品零售；住房租赁；物业管理；企业管理咨询；市场营销策划；会议及展览服务；广告设计、代理；"
    "广告制作；广告发布；组织文化艺术交流活动；货物进出口；技术进出口；互联网销售（除销售需要许可的商品）；",
    # the standard closing sentences of a business scope
    "（依法须经批准的项目，经相关部门批准后方可开展经营活动，具体经营项目以相关部门批准文件或许可证件为准）。"
    "（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）。",
    # market-entity types, as printed (full-width brackets) and as data systems store them
    "个人独资企业普通合伙企业有限合伙企业个体工商户农民专业合作社全民所有制集体所有制分公司"
    "股份有限公司（上市、自然人投资或控股）股份有限公司（非上市、自然人投资或控股）"
    "有限责任公司（国有独资）有限责任公司（外商投资、非独资）有限责任公司（台港澳与境内合资）"
    "有限责任公司（非自然人投资或控股的法人独资）有限责任公司（法人独资）有限责任公司（自然人独资）"
    "有限责任公司（自然人投资或控股）"
    "有限责任公司(法人独资)有限责任公司(自然人独资)有限责任公司(自然人投资或控股)",
    # registered capital and operating terms
    "人民币美元壹贰叁肆伍陆柒捌玖拾佰仟万亿元整壹拾万元整伍拾万元整壹佰万元整贰佰万元整叁佰万元整"
    "伍佰万元整壹仟万元整年月日长期至长期",
    # issuing authorities
    "卫生健康委员会公安局住房和城乡建设局教育局民政局人力资源和社会保障局交通运输局行政审批局分局"
    "市场监督管理局",
    # company-name endings
    "商贸有限公司贸易有限公司餐饮管理有限公司建设工程有限公司文化传媒有限公司电子商务有限公司"
    "网络科技有限公司信息技术有限公司数字科技有限公司科技有限公司有限公司",
)

#: The preset dictionary (UTF-8).
PRESET_DICTIONARY: bytes = "".join(_GROUPS).encode("utf-8")
#: Its SHA-256, which pins the CL1 format (hex).
PRESET_DICTIONARY_SHA256 = "597e94d2cfbbc89990432b34bb0d1e50d2a3d506afb4908ceb39b2be3082ee45"
